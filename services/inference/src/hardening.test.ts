// The node tried as an adversarial client would (issue: hardening): every case here failed on the node
// before the fix it names. A real node (cpu backend, bundled model) behind a real gRPC server on loopback.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client, credentials, type ServiceError, status } from "@grpc/grpc-js";
import { blockBytes, GREEDY, generate } from "@specloop/engine";
import { CompleteRequest, CompleteResponse, Drafter, type InferenceClient } from "@specloop/proto";
import { generateStream, startTestNode, type TestNode } from "./testing.js";

function call<T>(fn: (cb: (err: ServiceError | null, res: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where a refusal was expected");
}

// Requests as plain objects: fromPartial fills the fields a test leaves out.
const complete = (client: InferenceClient, req: Record<string, unknown>) =>
  call<CompleteResponse>((cb) =>
    client.complete(CompleteRequest.fromPartial(req as Partial<CompleteRequest>), cb as never),
  );

const PY = "def fibonacci(n):\n    if n < 2:\n        return n\n";
const C = "int main(void) {\n    int i;\n    for (i = 0; i < 10; i++)";

let t: TestNode;

before(async () => {
  t = await startTestNode({
    SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "16",
    SPECLOOP_SCHEDULER__MAX_BATCH: "8",
    SPECLOOP_TRACES__ENABLED: "false",
  });
});

after(() => t?.close());

describe("hardening - requests are isolated", () => {
  it("two concurrent calls with the same request_id each get their own output, for every drafter", async () => {
    const solo = async (prompt: string) => {
      const ids = t.node.tokenizer.encodePrompt(prompt);
      const { outputs } = await generate(t.node.model, [
        { prompt: ids, maxTokens: 24, stopTokenIds: [], sampling: GREEDY },
      ]);
      return outputs[0]?.tokens ?? [];
    };
    const want = [await solo(PY), await solo(C)];
    for (const drafter of [Drafter.DRAFTER_NONE, Drafter.DRAFTER_SUFFIX, Drafter.DRAFTER_DRAFT_MODEL]) {
      const [a, b] = await Promise.all(
        [PY, C].map((prompt) =>
          generateStream(t.client, {
            requestId: "same-id",
            prompt,
            maxTokens: 24,
            speculation: { drafter },
            sampling: { stopTokenIds: [] },
          }),
        ),
      );
      for (const [i, chunks] of [a, b].entries()) {
        const tokens = (chunks ?? []).flatMap((c) => c.tokenIds);
        const w = want[i] as number[];
        // The node stops at EOS; compare up to what it produced.
        assert.deepEqual(tokens, w.slice(0, tokens.length), `${drafter}: call ${i} saw only its own tokens`);
        assert.ok(tokens.length > 0);
        assert.ok(
          (chunks ?? []).every((c) => c.requestId === "same-id"),
          "the client's id is echoed",
        );
      }
    }
  });

  it("counts speculation whatever the trace setting (traces are off on this node)", async () => {
    const res = await complete(t.client, {
      prompt: PY.repeat(3),
      maxTokens: 48,
      speculation: { drafter: Drafter.DRAFTER_SUFFIX },
    });
    const s = res.stats;
    assert.ok(s !== undefined && s.targetPasses > 0);
    assert.ok(s.proposedTokens > 0, "the suffix drafter proposed from the repeated prompt");
    assert.ok(s.acceptedTokens <= s.proposedTokens);
    // accepted_per_pass is (accepted + one target token a pass) / passes, from the same counters.
    assert.ok(Math.abs(s.acceptedPerPass - (s.acceptedTokens + s.targetPasses) / s.targetPasses) < 1e-9);
  });

  it("reports KV in use at scrape time: 0 once idle, as the status says", async () => {
    await complete(t.client, { prompt: PY, maxTokens: 8 });
    const gauge = await t.node.metrics.kvBlocksUsed.get();
    assert.equal(gauge.values[0]?.value, 0);
    assert.equal(t.node.status().kvBlocksUsed, 0);
  });
});

describe("hardening - bounds and statuses", () => {
  it("refuses a multi-megabyte prompt in bytes, before tokenizing it", async () => {
    const err = await refusal(complete(t.client, { prompt: "x".repeat(3_900_000), maxTokens: 4 }));
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /prompt.*bytes of prompt/);
  });

  it("refuses a message over the server's size limit with RESOURCE_EXHAUSTED", async () => {
    const err = await refusal(complete(t.client, { prompt: "x".repeat(5 * 1024 * 1024), maxTokens: 4 }));
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  });

  it("bounds domain labels: a long one is refused, distinct ones past the bound fold into other", async () => {
    const long = await refusal(complete(t.client, { prompt: PY, maxTokens: 1, domain: "d".repeat(4096) }));
    assert.equal(long.code, status.INVALID_ARGUMENT);
    assert.match(long.details, /domain/);
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        complete(t.client, {
          prompt: PY,
          maxTokens: 2,
          domain: `domain-${i}-${"x".repeat(50)}`,
          speculation: { drafter: Drafter.DRAFTER_SUFFIX },
        }),
      ),
    );
    const domains = new Set(t.node.status().acceptance.map((a) => a.domain));
    assert.ok(domains.size <= 33, `${domains.size} domains tracked`);
    assert.ok(domains.has("other"));
  });

  it("answers an unknown drafter value and a seed past 2^53 with INVALID_ARGUMENT naming the field", async () => {
    const seed = await refusal(
      complete(t.client, { prompt: PY, maxTokens: 2, sampling: { seed: "1152921504606846976" } }),
    );
    assert.equal(seed.code, status.INVALID_ARGUMENT);
    assert.match(seed.details, /sampling\.seed/);
    // Drafter 99 is well-formed protobuf (proto3 enums are open): written by hand, after a valid request.
    const valid = CompleteRequest.encode(CompleteRequest.fromPartial({ prompt: PY, maxTokens: 2 })).finish();
    // speculation (field 8, length 2) { drafter (field 1, varint) = 99 }
    const extra = Buffer.from([(8 << 3) | 2, 2, (1 << 3) | 0, 99]);
    const raw = new Client(`127.0.0.1:${t.server.port}`, credentials.createInsecure());
    const err = await refusal(
      new Promise((resolve, reject) =>
        raw.makeUnaryRequest(
          "/specloop.v1.Inference/Complete",
          () => Buffer.concat([valid, extra]),
          (b: Buffer) => CompleteResponse.decode(b),
          null,
          (e, r) => (e ? reject(e) : resolve(r)),
        ),
      ),
    );
    raw.close();
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /speculation\.drafter/);
  });
});

describe("hardening - a prompt that just fits a small KV pool is admitted, not stalled", () => {
  let small: TestNode;
  before(async () => {
    // A pool of exactly 5 blocks of 16 tokens.
    const bytes = blockBytes(t.node.model.kvSpec(0, 16));
    small = await startTestNode({
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: String((5.5 * bytes) / 2 ** 20),
      SPECLOOP_SCHEDULER__KV_BLOCK_SIZE: "16",
      SPECLOOP_TRACES__ENABLED: "false",
    });
    assert.equal(small.node.kv.spec.numBlocks, 5);
  });
  after(() => small?.close());

  it("admits 72-79-token prompts (draft lookahead cut), refuses 80 at submit, and serves the request queued behind", async () => {
    const base = t.node.tokenizer.encodePrompt(PY.repeat(20));
    for (const n of [72, 79]) {
      const res = await complete(small.client, {
        promptTokenIds: base.slice(0, n),
        maxTokens: 1,
        speculation: { drafter: Drafter.DRAFTER_SUFFIX, maxDraftTokens: 8 },
      });
      assert.equal(res.tokenIds.length, 1, `a ${n}-token prompt is answered`);
    }
    const err = await refusal(complete(small.client, { promptTokenIds: base.slice(0, 80), maxTokens: 1 }));
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /KV blocks/);
    const behind = await complete(small.client, { prompt: "def f():", maxTokens: 4 });
    assert.ok(behind.tokenIds.length > 0);
  });
});
