// The `model` commands as a user runs them: a real process on the bundled model, --json parsed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runCli } from "../run-cli.testing.js";

const MODEL = fileURLToPath(new URL("../../../models/tiny-code", import.meta.url));

interface ReferenceInput {
  name: string;
  text?: string;
  input_ids: number[];
  topk: [number, number][][];
  greedy: number[];
}
const REFERENCE = JSON.parse(readFileSync(`${MODEL}/reference.json`, "utf8")) as { inputs: ReferenceInput[] };
const byName = (name: string) => REFERENCE.inputs.find((i) => i.name === name)!;

test("model generate: greedy --tokens on cpu gives transformers' continuation and a decode speed", async () => {
  const ref = byName("ids-7");
  const r = await runCli([
    ...["model", "generate", "--model", MODEL, "--tokens", ref.input_ids.join(",")],
    ...["--max-tokens", "8", "--backend", "cpu", "--json"],
  ]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.output_ids, ref.greedy.slice(0, 8));
  assert.equal(out.backend_requested, "cpu");
  assert.equal(out.backend_used, "cpu");
  assert.equal(out.decode_tokens, 7);
  assert.ok(out.decode_tokens_per_second > 0);
  assert.equal(typeof out.text, "string");
});

test("model generate: a text prompt is tokenized with bos first; a seed makes sampling repeatable", async () => {
  const ref = byName("py-def");
  const args = ["model", "generate", "--model", MODEL, "--prompt", ref.text!, "--max-tokens", "6", "--json"];
  const sampled = [...args, "--temperature", "0.9", "--top-k", "50", "--top-p", "0.9", "--seed", "11"];
  const [a, b] = await Promise.all([runCli(sampled), runCli(sampled)]);
  assert.equal(a.code, 0, a.stderr);
  const [ja, jb] = [JSON.parse(a.stdout), JSON.parse(b.stdout)];
  assert.deepEqual(ja.prompt_ids, ref.input_ids);
  assert.equal(ja.seed, 11);
  assert.deepEqual(ja.output_ids, jb.output_ids);
  assert.equal(ja.output_ids.length, 6);
});

test("model logits: top-8 at every position and the last position's full logits", async () => {
  const ref = byName("ids-7");
  const r = await runCli([
    "model",
    "logits",
    "--model",
    MODEL,
    "--tokens",
    ref.input_ids.join(","),
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { topk: [number, number][][]; last_logits: number[] };
  assert.equal(out.topk.length, ref.input_ids.length);
  out.topk.forEach((pairs, p) => {
    assert.deepEqual(
      pairs.map(([id]) => id),
      ref.topk[p]!.map(([id]) => id),
    );
    pairs.forEach(([, logit], k) => {
      assert.ok(Math.abs(logit - ref.topk[p]![k]![1]) < 2e-3);
    });
  });
  assert.equal(out.last_logits.length, 8192);
});

test("model commands: a bad model directory or bad --tokens fail with one clear line", async () => {
  const missing = await runCli(["model", "logits", "--model", "/nonexistent/model", "--tokens", "1,2"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /specloop model logits: .*\/nonexistent\/model\/config\.json: missing/);
  const bad = await runCli(["model", "logits", "--model", MODEL, "--tokens", "1,x"]);
  assert.equal(bad.code, 2, "a malformed option is a usage error");
  assert.match(bad.stderr, /comma-separated token ids, got "x"/);
  const outside = await runCli([
    "model",
    "generate",
    "--model",
    MODEL,
    "--tokens",
    "1,99999",
    "--backend",
    "reference",
  ]);
  assert.equal(outside.code, 1);
  assert.match(outside.stderr, /token id 99999 is outside the vocabulary \(size 8192\)/);
  const both = await runCli(["model", "generate", "--model", MODEL, "--backend", "reference"]);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /exactly one of --prompt and --tokens/);
});

test("model generate --drafter: each drafter gives the plain output and says how many tokens a pass gave", async () => {
  const ref = byName("py-def");
  const base = ["model", "generate", "--model", MODEL, "--prompt", ref.text!, "--max-tokens", "24"];
  const run = async (extra: string[]) => {
    const r = await runCli([...base, ...extra, "--backend", "cpu", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const plain = await run([]);
  assert.equal(plain.drafter, "none");
  assert.equal(plain.accepted_per_pass, 1);
  const draftDir = fileURLToPath(new URL("../../../models/tiny-code-draft", import.meta.url));
  for (const extra of [
    ["--drafter", "suffix"],
    ["--drafter", "draft-model", "--draft-model", draftDir],
  ]) {
    const out = await run(extra);
    assert.deepEqual(out.output_ids, plain.output_ids, extra.join(" "));
    assert.ok(out.target_passes > 0 && out.target_passes <= out.output_ids.length);
    assert.ok(Math.abs(out.accepted_per_pass - out.output_ids.length / out.target_passes) < 1e-9);
  }
  const eagle = await runCli([...base, "--drafter", "eagle", "--json"]);
  assert.equal(eagle.code, 1);
  assert.match(eagle.stderr, /--speculator FILE/);
});
