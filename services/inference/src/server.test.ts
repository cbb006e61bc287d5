// The Inference API on a real gRPC server over loopback, the real engine (cpu backend) on the bundled
// model, no NATS (traces and hot-swap are in hot-swap.test.ts).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import { GREEDY, generate } from "@specloop/engine";
import {
  CompleteRequest,
  type CompleteResponse,
  Drafter,
  FinishReason,
  GenerateRequest,
  type InferenceClient,
  ScoreRequest,
} from "@specloop/proto";
import type { InferenceNode } from "./node.js";
import { generateStream, startTestNode, type TestNode } from "./testing.js";

let node: InferenceNode;
let t: TestNode;
let client: InferenceClient;

function call<T>(fn: (cb: (err: ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

async function callError(
  fn: (cb: (err: ServiceError | null, res: unknown) => void) => void,
): Promise<ServiceError> {
  try {
    await call(fn);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where an error was expected");
}

// Requests as plain objects: ts-proto's fromPartial fills the fields a test leaves out.
type RequestFields = Record<string, unknown>;
const complete = (req: RequestFields) => CompleteRequest.fromPartial(req as Partial<CompleteRequest>);

const stream = (req: RequestFields) => generateStream(client, req);

before(async () => {
  t = await startTestNode({
    SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "16",
    SPECLOOP_SCHEDULER__MAX_QUEUE: "4",
    SPECLOOP_SCHEDULER__MAX_BATCH: "4",
  });
  ({ node, client } = t);
});

after(() => t?.close());

const PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n";

describe("Generate and Complete", () => {
  it("stream the target's greedy output, for every drafter, with the same tokens", async () => {
    const ids = node.tokenizer.encode(PROMPT);
    const plain = await generate(node.model, [
      { prompt: ids, maxTokens: 40, stopTokenIds: [], sampling: GREEDY },
    ]);
    const want = plain.outputs[0]?.tokens ?? [];
    for (const drafter of [
      Drafter.DRAFTER_NONE,
      Drafter.DRAFTER_SUFFIX,
      Drafter.DRAFTER_DRAFT_MODEL,
      Drafter.DRAFTER_AUTO,
    ]) {
      const chunks = await stream({ promptTokenIds: ids, maxTokens: 40, speculation: { drafter } });
      const tokens = chunks.flatMap((c) => c.tokenIds);
      // EOS stops early in the node (it always stops at EOS); compare up to it.
      const eos = want.findIndex((t) => node.model.config.eosTokenIds.includes(t));
      assert.deepEqual(tokens, eos >= 0 ? want.slice(0, eos + 1) : want, `drafter ${drafter}`);
      const last = chunks.at(-1);
      assert.ok(
        last?.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED,
        "the last chunk says why it ended",
      );
      assert.equal(last?.usage?.completionTokens, tokens.length);
      const text = chunks.map((c) => c.text).join("");
      assert.equal(text, node.tokenizer.decode(tokens, { skipSpecialTokens: true }));
      if (drafter === Drafter.DRAFTER_DRAFT_MODEL) {
        assert.ok((last?.stats?.acceptedPerPass ?? 0) > 1, "the draft model's drafts are accepted");
        assert.equal(last?.stats?.drafter, Drafter.DRAFTER_DRAFT_MODEL);
      }
    }
  });

  it("Complete answers once with text, ids, usage and the drafter that ran", async () => {
    const res = await call<CompleteResponse>((cb) =>
      client.complete(
        complete({
          prompt: PROMPT,
          maxTokens: 12,
          speculation: { drafter: Drafter.DRAFTER_SUFFIX, maxDraftTokens: 4 },
        }),
        cb as never,
      ),
    );
    assert.ok(res.tokenIds.length > 0 && res.tokenIds.length <= 12);
    assert.equal(res.usage?.promptTokens, node.tokenizer.encodePrompt(PROMPT).length);
    assert.equal(res.stats?.drafter, Drafter.DRAFTER_SUFFIX);
    assert.ok(res.requestId !== "");
  });

  it("stops at a stop string and cuts the text before it", async () => {
    const full = await call<{ text: string }>((cb) =>
      client.complete(complete({ prompt: PROMPT, maxTokens: 30 }), cb as never),
    );
    const stop = full.text.slice(5, 8);
    assert.ok(stop.length === 3, "the free output is long enough to pick a stop string");
    const cut = await call<{ text: string; finishReason: FinishReason }>((cb) =>
      client.complete(complete({ prompt: PROMPT, maxTokens: 30, sampling: { stop: [stop] } }), cb as never),
    );
    assert.equal(cut.text, full.text.slice(0, full.text.indexOf(stop)));
    assert.equal(cut.finishReason, FinishReason.FINISH_REASON_STOP);
  });
});

describe("bad input", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["an empty prompt", { prompt: "" }, /prompt: is empty/],
    ["two prompts", { prompt: "x", promptTokenIds: [1] }, /exactly one/],
    ["a token outside the vocabulary", { promptTokenIds: [1, 99999] }, /prompt_token_ids\[1\]/],
    ["a prompt longer than the context", { promptTokenIds: new Array(5000).fill(5) }, /context/],
    ["max_tokens over the limit", { prompt: "x", maxTokens: 100000 }, /max_tokens/],
    ["a negative temperature", { prompt: "x", sampling: { temperature: -1 } }, /sampling.temperature/],
    ["top_p over 1", { prompt: "x", sampling: { topP: 1.5 } }, /sampling.top_p/],
  ];
  for (const [name, req, message] of cases) {
    it(`refuses ${name} with INVALID_ARGUMENT naming the field`, async () => {
      const err = await callError((cb) => client.complete(complete(req), cb as never));
      assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, message);
    });
  }

  it("refuses another model with NOT_FOUND and an unloaded drafter with FAILED_PRECONDITION", async () => {
    const other = await callError((cb) =>
      client.complete(complete({ prompt: "x", model: "gpt-9" }), cb as never),
    );
    assert.equal(other.code, status.NOT_FOUND);
    const eagle = await callError((cb) =>
      client.complete(
        complete({ prompt: "x", speculation: { drafter: Drafter.DRAFTER_EAGLE } }),
        cb as never,
      ),
    );
    assert.equal(eagle.code, status.FAILED_PRECONDITION);
    assert.match(eagle.details, /eagle/);
  });
});

describe("load", () => {
  it("a cancelled call frees its KV blocks, and a full queue answers RESOURCE_EXHAUSTED", async () => {
    const free = node.kv.numFreeBlocks;
    const s = client.generate(GenerateRequest.fromPartial({ prompt: PROMPT, maxTokens: 900 }));
    await new Promise<void>((resolve, reject) => {
      s.once("data", () => resolve());
      s.once("error", reject);
    });
    assert.ok(node.kv.numFreeBlocks < free, "the running request holds KV");
    s.cancel();
    await new Promise((r) => s.on("error", r));
    for (let i = 0; i < 100 && node.kv.numFreeBlocks !== free; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(node.kv.numFreeBlocks, free, "cancelling gave every block back");

    // 4 run (max batch), 4 wait (max queue); the next is refused, and nothing already queued is lost.
    const calls = Array.from({ length: 8 }, () =>
      call<{ tokenIds: number[] }>((cb) =>
        client.complete(complete({ prompt: PROMPT, maxTokens: 64 }), cb as never),
      ),
    );
    await new Promise((r) => setTimeout(r, 50));
    const refused = await callError((cb) =>
      client.complete(complete({ prompt: PROMPT, maxTokens: 4 }), cb as never),
    );
    assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
    const done = await Promise.all(calls);
    assert.ok(done.every((d) => d.tokenIds.length > 0));
  });
});

describe("Score", () => {
  it("gives each continuation's log-probabilities as teacher forcing computes them", async () => {
    const prompt = node.tokenizer.encode(PROMPT);
    const plain = await generate(node.model, [{ prompt, maxTokens: 3, stopTokenIds: [], sampling: GREEDY }]);
    const greedy = plain.outputs[0]?.tokens ?? [];
    const res = await call<{
      scores: { tokenLogprobs: number[]; totalLogprob: number; top: { tokens: { tokenId: number }[] }[] }[];
    }>((cb) =>
      client.score(
        ScoreRequest.fromPartial({
          promptTokenIds: prompt,
          continuations: [{ tokenIds: greedy }, { text: " banana" }],
          topLogprobs: 3,
        }),
        cb as never,
      ),
    );
    assert.equal(res.scores.length, 2);
    const [g, b] = res.scores;
    // The greedy continuation's tokens are each the most likely at their position.
    for (const [i, t] of (g?.top ?? []).entries()) assert.equal(t.tokens[0]?.tokenId, greedy[i]);
    assert.ok(g?.tokenLogprobs.every((lp) => lp <= 0));
    assert.ok((g?.totalLogprob ?? 0) > (b?.totalLogprob ?? 0), "the greedy continuation is the likelier one");
    const err = await callError((cb) =>
      client.score(ScoreRequest.fromPartial({ prompt: "x", continuations: [] }), cb as never),
    );
    assert.equal(err.code, status.INVALID_ARGUMENT);
  });

  it("GetNodeStatus reports the model, backend, KV and acceptance", async () => {
    const res = await call<{
      status?: { modelId: string; backend: string; kvBlocksTotal: number; acceptance: unknown[] };
    }>((cb) => client.getNodeStatus({}, cb as never));
    assert.equal(res.status?.modelId, "tiny-code");
    assert.equal(res.status?.backend, "cpu");
    assert.ok((res.status?.kvBlocksTotal ?? 0) > 0);
    assert.ok((res.status?.acceptance.length ?? 0) > 0, "acceptance per drafter after the requests above");
  });
});
