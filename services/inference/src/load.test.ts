// A bounded load test on loopback (issue: hardening): 64 concurrent Generate streams on one node, with a
// cancel storm, duplicate request ids and bad inputs mixed in. No call may fail unexpectedly, every greedy
// stream that runs to its end equals the same prompt decoded alone, and every KV block is back afterwards.
import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type ServiceError, status } from "@grpc/grpc-js";
import { loadBundledPrompts } from "@specloop/engine";
import { Drafter, GenerateRequest, type GenerateResponse } from "@specloop/proto";
import { generateStream, startTestNode, type TestNode } from "./testing.js";

let t: TestNode;

before(async () => {
  t = await startTestNode({
    SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "24",
    SPECLOOP_SCHEDULER__MAX_BATCH: "16",
    SPECLOOP_SCHEDULER__MAX_QUEUE: "128",
    SPECLOOP_TRACES__ENABLED: "false",
  });
});

after(() => t?.close());

const DRAFTERS = [
  Drafter.DRAFTER_NONE,
  Drafter.DRAFTER_SUFFIX,
  Drafter.DRAFTER_DRAFT_MODEL,
  Drafter.DRAFTER_AUTO,
];

/** Streams a request and cancels it after `after` chunks; resolves with what it got and how it ended. */
function cancelledStream(
  req: Partial<GenerateRequest>,
  after: number,
): Promise<{ code: number | undefined }> {
  return new Promise((resolve) => {
    let seen = 0;
    const s = t.client.generate(GenerateRequest.fromPartial(req));
    s.on("data", () => {
      if (++seen === after) s.cancel();
    });
    s.on("error", (e: ServiceError) => resolve({ code: e.code }));
    s.on("end", () => resolve({ code: undefined }));
  });
}

it("load - 64 concurrent streams with cancels, duplicate ids and bad inputs: no unexpected failure, outputs unchanged, KV back to 0", async () => {
  const all = await loadBundledPrompts(fileURLToPath(new URL("../../../models/tiny-code", import.meta.url)));
  // Eight prompts of each domain, cut short: 64 streams reuse them, so each has a solo reference.
  const prompts = ["python", "c", "prose"].flatMap((d) =>
    all
      .filter((p) => p.domain === d)
      .slice(0, 8)
      .map((p) => p.prompt.slice(0, 200)),
  );
  const maxTokens = 24;
  // Each prompt alone first: the reference outputs.
  const solo = new Map<string, number[]>();
  for (const prompt of new Set(prompts)) {
    const chunks = await generateStream(t.client, {
      prompt,
      maxTokens,
      speculation: { drafter: Drafter.DRAFTER_NONE },
    });
    solo.set(
      prompt,
      chunks.flatMap((c) => c.tokenIds),
    );
  }
  const full: Promise<{ prompt: string; chunks: GenerateResponse[] }>[] = [];
  const cancels: Promise<{ code: number | undefined }>[] = [];
  const bad: Promise<unknown>[] = [];
  for (let i = 0; i < 64; i++) {
    const prompt = prompts[i % prompts.length] as string;
    const req = {
      prompt,
      maxTokens,
      // Every fourth request reuses one id; every drafter is in the mix.
      requestId: i % 4 === 0 ? "dup" : `r${i}`,
      speculation: { drafter: DRAFTERS[i % DRAFTERS.length] as Drafter, maxDraftTokens: 0 },
    };
    if (i % 5 === 0) cancels.push(cancelledStream(req, 1 + (i % 3)));
    else full.push(generateStream(t.client, req).then((chunks) => ({ prompt, chunks })));
    if (i % 8 === 0) {
      bad.push(
        generateStream(t.client, { prompt: "", maxTokens }).then(
          () => assert.fail("an empty prompt was accepted"),
          (e: ServiceError) => assert.equal(e.code, status.INVALID_ARGUMENT),
        ),
        generateStream(t.client, { promptTokenIds: [99_999], maxTokens }).then(
          () => assert.fail("a token outside the vocabulary was accepted"),
          (e: ServiceError) => assert.equal(e.code, status.INVALID_ARGUMENT),
        ),
      );
    }
  }
  const results = await Promise.all(full);
  for (const { prompt, chunks } of results) {
    const tokens = chunks.flatMap((c) => c.tokenIds);
    const want = solo.get(prompt) as number[];
    assert.deepEqual(tokens, want, "a stream under load equals the prompt decoded alone");
  }
  for (const c of await Promise.all(cancels)) {
    // A cancel that lands after the last chunk is a completed call; otherwise CANCELLED, never anything else.
    assert.ok(c.code === undefined || c.code === status.CANCELLED, `unexpected status ${c.code}`);
  }
  await Promise.all(bad);
  // Cancelled sequences give their blocks back at the next step.
  for (let i = 0; i < 50 && t.node.kv.numFreeBlocks !== t.node.kv.spec.numBlocks; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(t.node.kv.numFreeBlocks, t.node.kv.spec.numBlocks, "every KV block is back");
  assert.equal(t.node.scheduler.runningCount + t.node.scheduler.queueDepth, 0);
});
