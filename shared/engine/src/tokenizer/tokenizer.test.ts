import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import { ModelFileError } from "../errors.js";
import { Tokenizer } from "./tokenizer.js";

const MODELS = new URL("../../../../models/", import.meta.url).pathname;
const TARGET = join(MODELS, "tiny-code");
const DRAFT = join(MODELS, "tiny-code-draft");

interface ReferenceInput {
  name: string;
  kind: "ids" | "text";
  text?: string;
  text_ids?: number[];
}

async function load(dir: string): Promise<Tokenizer> {
  return Tokenizer.fromFiles(join(dir, "tokenizer.json"), join(dir, "tokenizer_config.json"));
}

/** The concatenated text of a stream decoder fed `chunks`, and every delta it gave. */
function stream(
  tok: Tokenizer,
  chunks: number[][],
  skipSpecialTokens = false,
): { text: string; deltas: string[] } {
  const dec = tok.createStreamDecoder({ skipSpecialTokens });
  const deltas = chunks.map((c) => dec.push(c));
  deltas.push(dec.flush());
  return { text: deltas.join(""), deltas };
}

const NON_ASCII = "héllo — 世界 🙂";

describe("tokenizer", () => {
  let tok: Tokenizer;
  before(async () => {
    tok = await load(TARGET);
  });

  test("tokenizer - encodes the reference prompts to their recorded ids and decodes them back", async () => {
    for (const dir of [TARGET, DRAFT]) {
      const t = await load(dir);
      const ref = JSON.parse(await readFile(join(dir, "reference.json"), "utf8")) as {
        inputs: ReferenceInput[];
      };
      const texts = ref.inputs.filter((i) => i.kind === "text");
      assert.ok(texts.length >= 3);
      for (const input of texts) {
        const ids = t.encode(input.text!, { addSpecialTokens: false });
        assert.deepEqual(ids, input.text_ids, `${dir}: ${input.name}`);
        assert.equal(t.decode(ids), input.text, `${dir}: ${input.name}`);
      }
    }
  });

  test("tokenizer - special token ids from tokenizer_config.json, overridable by config.json", async () => {
    assert.equal(tok.vocabSize, 8192);
    assert.equal(tok.bosTokenId, 0);
    assert.deepEqual(tok.eosTokenIds, [0]);
    assert.equal(tok.padTokenId, 1);
    assert.equal(tok.bosToken, "<|endoftext|>");
    assert.equal(tok.eosToken, "<|endoftext|>");
    assert.equal(tok.tokenToId("<|python|>"), 2);
    assert.equal(tok.idToToken(1), "<|pad|>");
    assert.ok(tok.isEos(0) && !tok.isEos(1));
    const over = await Tokenizer.fromFiles(
      join(TARGET, "tokenizer.json"),
      join(TARGET, "tokenizer_config.json"),
      {
        bosTokenId: 2,
        eosTokenIds: [3, 4],
        padTokenId: 4,
      },
    );
    assert.equal(over.bosTokenId, 2);
    // config.json's eos ids come first; the tokenizer's eos_token still stops generation.
    assert.deepEqual(over.eosTokenIds, [3, 4, 0]);
    assert.equal(over.padTokenId, 4);
  });

  test("tokenizer - special tokens are encoded as one id and skipped on request", () => {
    const ids = tok.encode("<|python|>x = 1<|endoftext|>", { addSpecialTokens: false });
    assert.equal(ids[0], 2);
    assert.equal(ids.at(-1), 0);
    assert.equal(tok.decode(ids), "<|python|>x = 1<|endoftext|>");
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), "x = 1");
    // This tokenizer's post-processor adds nothing (the engine prepends BOS itself).
    assert.deepEqual(tok.encode("x = 1"), tok.encode("x = 1", { addSpecialTokens: false }));
  });

  test("tokenizer - the stream decoder matches decode() for every split of a non-ASCII string", () => {
    const ids = tok.encode(NON_ASCII, { addSpecialTokens: false });
    assert.equal(tok.decode(ids), NON_ASCII);
    // Byte-level BPE splits these characters over several tokens: decoding one alone is broken UTF-8.
    assert.ok(
      ids.some((id) => tok.decode([id]).includes("\uFFFD")),
      "the test string must split characters",
    );
    for (let i = 0; i <= ids.length; i++) {
      for (let j = i; j <= ids.length; j++) {
        const { text, deltas } = stream(tok, [ids.slice(0, i), ids.slice(i, j), ids.slice(j)]);
        assert.equal(text, NON_ASCII, `split at ${i}, ${j}`);
        for (const d of deltas) assert.ok(!d.includes("\uFFFD"), `split at ${i}, ${j}: broken delta ${d}`);
      }
    }
    const oneByOne = stream(
      tok,
      ids.map((id) => [id]),
    );
    assert.equal(oneByOne.text, NON_ASCII);
    assert.ok(oneByOne.deltas.every((d) => !d.includes("\uFFFD")));
    // Text is released as soon as a character is complete, not only at the end.
    assert.ok(oneByOne.deltas.filter((d) => d.length > 0).length > 5);
  });

  test("tokenizer - the stream decoder matches decode() on the reference prompts, token by token", async () => {
    const ref = JSON.parse(await readFile(join(TARGET, "reference.json"), "utf8")) as {
      inputs: ReferenceInput[];
    };
    for (const input of ref.inputs.filter((i) => i.kind === "text")) {
      const ids = input.text_ids!;
      assert.equal(
        stream(
          tok,
          ids.map((id) => [id]),
        ).text,
        tok.decode(ids),
        input.name,
      );
    }
  });

  test("tokenizer - the stream decoder honours skipSpecialTokens and accepts single ids", () => {
    const ids = tok.encode("a<|endoftext|>é", { addSpecialTokens: false });
    assert.equal(stream(tok, [ids], true).text, tok.decode(ids, { skipSpecialTokens: true }));
    assert.equal(stream(tok, [ids], false).text, tok.decode(ids));
    const dec = tok.createStreamDecoder();
    let out = "";
    for (const id of tok.encode(NON_ASCII, { addSpecialTokens: false })) out += dec.push(id);
    out += dec.flush();
    assert.equal(out, NON_ASCII);
  });

  test("tokenizer - flush releases an incomplete trailing character as U+FFFD", () => {
    const ids = tok.encode("ok 🙂", { addSpecialTokens: false });
    const cut = ids.slice(0, -1); // the emoji's last byte never arrives
    const dec = tok.createStreamDecoder();
    const held = dec.push(cut);
    assert.ok(!held.includes("\uFFFD"));
    const rest = dec.flush();
    assert.ok(rest.endsWith("\uFFFD"));
    assert.equal(held + rest, tok.decode(cut));
    assert.equal(dec.flush(), "", "a second flush has nothing left");
  });

  test("tokenizer - a missing or broken tokenizer.json names the path", async () => {
    const missing = join(TARGET, "no-such-tokenizer.json");
    await assert.rejects(Tokenizer.fromFiles(missing), (err: unknown) => {
      assert.ok(err instanceof ModelFileError);
      assert.equal(err.file, missing);
      assert.match(err.message, /no-such-tokenizer\.json: missing/);
      return true;
    });
    const notJson = join(TARGET, "MODEL_CARD.md");
    await assert.rejects(Tokenizer.fromFiles(notJson), /MODEL_CARD\.md: not valid JSON/);
  });
});
