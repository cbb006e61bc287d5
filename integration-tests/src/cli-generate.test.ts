// `specloop generate` as an operator runs it: the CLI process against a real inference node process (the
// bundled model on the cpu backend) with a real nats-server.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runCli } from "@specloop/cli/testing";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

let nats: NatsServer;
let node: ServiceProcess;

before(async () => {
  nats = await startNatsServer();
  node = await spawnService("inference", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_NODE__BACKEND: "cpu",
      SPECLOOP_NODE__CPU_THREADS: "1",
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
    },
    timeoutMs: 60_000,
  });
});

after(async () => {
  await node?.stop();
  await nats?.stop();
});

test("cli generate - streams a node's output; every drafter gives the same greedy answer", async () => {
  const base = ["generate", "--server", node.address, "--prompt", "def add(a, b):\n", "--max-tokens", "24"];
  const answers = [];
  for (const drafter of ["none", "suffix", "draft-model"]) {
    const r = await runCli([...base, "--drafter", drafter, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.ok(out.output_ids.length > 0 && out.output_ids.length <= 24);
    assert.ok(["stop", "length"].includes(out.finish_reason));
    assert.equal(out.usage.completionTokens, out.output_ids.length);
    answers.push(out.output_ids);
  }
  assert.deepEqual(answers[1], answers[0]);
  assert.deepEqual(answers[2], answers[0]);
  const plain = await runCli(base);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /tokens per pass/);
});

test("cli generate - a refused request prints the node's reason and exits 1", async () => {
  const r = await runCli(["generate", "--server", node.address, "--prompt", "x", "--max-tokens", "100000"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /max_tokens/);
});
