// The scheduler with no model: a StepEngine written here keeps KV accounting in blocks and commits one
// scripted token per sequence per step, so admission, preemption, the never-fits edge, prefix sharing and
// stop strings across steps are tested on their own (as vLLM tests its scheduler with hand-written outputs).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ResourceExhaustedError } from "@specloop/runtime";
import {
  DecodeSequence,
  type Detokenizer,
  type StepOptions,
  type StepResult,
  StopCondition,
} from "@specloop/speculation";
import type { ResolvedRequest } from "./requests.js";
import { type FinishedRequest, type RequestEvent, Scheduler, type StepEngine } from "./scheduler.js";

/** Token t of a sequence at output position i: a function of the position only, so recomputation agrees. */
const scripted = (i: number) => 10 + (i % 26);

class FakeEngine implements StepEngine {
  readonly cached = new Map<string, number>();
  private readonly held = new Map<string, number>();
  steps = 0;
  shared: [string, string][] = [];

  constructor(
    readonly blockSize: number,
    readonly totalBlocks: number,
  ) {}

  freeBlocks(): number {
    let used = 0;
    for (const b of this.held.values()) used += b;
    return this.totalBlocks - used;
  }

  cachedTokens(id: string): number {
    return this.cached.get(id) ?? 0;
  }

  async step(seqs: readonly DecodeSequence[], options: StepOptions): Promise<StepResult> {
    this.steps++;
    const result: StepResult = {
      ran: [],
      starved: [],
      rows: 0,
      draftMs: 0,
      verifyMs: 0,
      refusedProposals: 0,
    };
    let budget = options.prefillTokens;
    for (const seq of seqs) {
      const cached = this.cachedTokens(seq.id);
      const uncomputed = seq.tokens.length - cached;
      const compute = uncomputed <= 1 ? uncomputed : Math.min(uncomputed, budget);
      if (compute <= 0) continue;
      if (uncomputed > 1) budget -= compute;
      // Room for the computed tokens and the one this step commits.
      const need = Math.ceil((cached + compute + 1) / this.blockSize);
      const have = this.held.get(seq.id) ?? 0;
      if (need - have > this.freeBlocks()) {
        result.starved.push(seq);
        continue;
      }
      this.held.set(seq.id, Math.max(have, need));
      this.cached.set(seq.id, cached + compute);
      result.rows += compute;
      const tokens = compute === uncomputed ? seq.commit([scripted(seq.outputLength)]) : [];
      result.ran.push({ seq, tokens, computed: compute });
    }
    return result;
  }

  evict(seq: DecodeSequence): void {
    this.cached.delete(seq.id);
    this.held.delete(seq.id);
  }

  sharePrefix(parent: DecodeSequence, seq: DecodeSequence): number {
    this.shared.push([parent.id, seq.id]);
    return 0;
  }
}

/** Letters for tokens 10..35, so stop strings can span tokens. */
class LetterDetokenizer implements Detokenizer {
  push(ids: readonly number[]): string {
    return ids.map((t) => String.fromCharCode(97 + ((t - 10) % 26))).join("");
  }
  flush(): string {
    return "";
  }
}

let next = 0;
function request(
  promptLength: number,
  maxTokens: number,
  extra: Partial<ResolvedRequest> = {},
): { request: ResolvedRequest; seq: DecodeSequence } {
  const seqId = `seq-${next++}`;
  const request: ResolvedRequest = {
    seqId,
    clientRequestId: seqId,
    promptTokens: Array.from({ length: promptLength }, (_, i) => 1 + (i % 5)),
    maxTokens,
    contextCut: false,
    sampling: { temperature: 0 },
    seed: 0,
    stopTokenIds: [],
    stopStrings: [],
    requestedDrafter: "none",
    drafter: "none",
    speculatorRole: "live",
    maxDraftTokens: 0,
    domain: "",
    sharePrefixWith: "",
    captureLayers: [],
    ...extra,
  };
  const seq = new DecodeSequence({
    id: seqId,
    prompt: request.promptTokens,
    maxTokens,
    sampling: request.sampling,
    seed: 0,
    stop: new StopCondition(
      [],
      request.stopStrings,
      request.stopStrings.length > 0 ? new LetterDetokenizer() : undefined,
    ),
    drafter: "none",
  });
  return { request, seq };
}

async function finished(events: AsyncIterable<RequestEvent>): Promise<FinishedRequest> {
  for await (const e of events) if (e.kind === "finished") return e.result;
  throw new Error("no finished event");
}

function scheduler(
  engine: FakeEngine,
  overrides: { maxBatch?: number; maxDraftTokens?: number; maxQueue?: number } = {},
) {
  return new Scheduler({
    engine,
    maxBatch: overrides.maxBatch ?? 8,
    maxQueue: overrides.maxQueue ?? 16,
    prefillTokensPerStep: 64,
    maxDraftTokens: overrides.maxDraftTokens ?? 8,
  });
}

describe("scheduler", () => {
  it("admits first come, first served within the batch size, and every request finishes", async () => {
    const engine = new FakeEngine(16, 64);
    const s = scheduler(engine, { maxBatch: 2 });
    const jobs = [0, 1, 2].map(() => request(8, 4));
    const runs = jobs.map((j) => finished(s.submit(j.request, j.seq)));
    const results = await Promise.all(runs);
    for (const r of results) {
      assert.equal(r.reason, "length");
      assert.deepEqual(r.seq.output, [0, 1, 2, 3].map(scripted));
    }
    const admitted = results.map((r) => r.admittedAt as number);
    assert.ok(
      (admitted[2] as number) >= (results[0]?.finishedAt as number),
      "the third waits for a batch slot",
    );
    assert.equal(engine.freeBlocks(), 64, "every block is back");
  });

  it("refuses at submit a prompt that can never fit the pool, and admits one that just fits (lookahead cut)", async () => {
    // 5 blocks of 16 = 80 tokens: a 79-token prompt plus the token it produces fits only without lookahead.
    const engine = new FakeEngine(16, 5);
    const s = scheduler(engine, { maxDraftTokens: 8 });
    for (const length of [72, 75, 79]) {
      const j = request(length, 1);
      const r = await finished(s.submit(j.request, j.seq));
      assert.equal(r.error, undefined, `a ${length}-token prompt is admitted and answered`);
      assert.equal(r.seq.outputLength, 1);
    }
    const big = request(80, 1);
    assert.throws(
      () => s.submit(big.request, big.seq),
      (e: unknown) => e instanceof ResourceExhaustedError,
    );
    // A request queued behind is not stalled by anything.
    const after = request(4, 2);
    assert.equal((await finished(s.submit(after.request, after.seq))).reason, "length");
  });

  it("preempts the newest sequence when the pool runs dry, recomputes it, and both finish with their outputs", async () => {
    // 6 blocks of 4 tokens: two sequences of 4 + 8 tokens each need 3 blocks at the end, plus growth.
    const engine = new FakeEngine(4, 6);
    const s = scheduler(engine, { maxDraftTokens: 0 });
    const a = request(4, 10);
    const b = request(4, 10);
    const [ra, rb] = await Promise.all([
      finished(s.submit(a.request, a.seq)),
      finished(s.submit(b.request, b.seq)),
    ]);
    for (const r of [ra, rb]) {
      assert.equal(r?.error, undefined);
      assert.deepEqual(
        r?.seq.output,
        Array.from({ length: 10 }, (_, i) => scripted(i)),
      );
    }
    assert.ok((rb?.finishedAt as number) >= (ra?.finishedAt as number), "the oldest always progresses first");
    assert.equal(engine.freeBlocks(), 6);
  });

  it("fails a lone sequence that outgrows the whole pool with RESOURCE_EXHAUSTED, and goes on", async () => {
    const engine = new FakeEngine(4, 2);
    const s = scheduler(engine, { maxDraftTokens: 0 });
    const j = request(4, 20);
    const r = await finished(s.submit(j.request, j.seq));
    assert.ok(r.error instanceof ResourceExhaustedError, String(r.error));
    const ok = request(2, 2);
    assert.equal((await finished(s.submit(ok.request, ok.seq))).error, undefined);
    assert.equal(engine.freeBlocks(), 2);
  });

  it("shares a running request's prefix with a request that names it", async () => {
    const engine = new FakeEngine(16, 64);
    const s = scheduler(engine);
    const parent = request(8, 100_000);
    const child = request(8, 2, { sharePrefixWith: parent.request.clientRequestId });
    const stopParent = new AbortController();
    for await (const e of s.submit(parent.request, parent.seq, stopParent.signal)) {
      // Once the parent runs (its prompt cached), the child names it.
      if (e.kind === "tokens" && !child.seq.done) {
        assert.equal((await finished(s.submit(child.request, child.seq))).error, undefined);
        stopParent.abort();
      }
    }
    assert.deepEqual(engine.shared, [[parent.seq.id, child.seq.id]]);
  });

  it("ends a sequence at a stop string that spans steps, after the token that completes it", async () => {
    const engine = new FakeEngine(16, 64);
    const s = scheduler(engine);
    // scripted tokens decode to "abcdef...": "cd" is completed by the 4th token, one token per step.
    const j = request(3, 20, { stopStrings: ["cd"] });
    const events: RequestEvent[] = [];
    for await (const e of s.submit(j.request, j.seq)) events.push(e);
    const r = (events.at(-1) as Extract<RequestEvent, { kind: "finished" }>).result;
    assert.equal(r.reason, "stop");
    assert.equal(r.seq.outputLength, 4, "no token after the one that completed the stop string");
    assert.equal(r.seq.stop.text, "ab", "the text is cut before the stop string");
    const tokenEvents = events.filter((e) => e.kind === "tokens");
    assert.equal(tokenEvents.length, 4, "the stop string was found across four one-token steps");
    // "c" could begin the stop string: it is held back from the settled text until it is decided.
    assert.deepEqual(
      tokenEvents.map((e) => (e.kind === "tokens" ? e.settledChars : -1)),
      [1, 2, 2, 2],
    );
  });

  it("cancels waiting and running requests, frees their KV, and sleeps when idle instead of spinning", async () => {
    const engine = new FakeEngine(16, 64);
    const s = scheduler(engine, { maxBatch: 1 });
    const running = request(4, 1000);
    const waiting = request(4, 5);
    const c1 = new AbortController();
    const c2 = new AbortController();
    const r1 = finished(s.submit(running.request, running.seq, c1.signal));
    const r2 = finished(s.submit(waiting.request, waiting.seq, c2.signal));
    await new Promise((r) => setTimeout(r, 10));
    c2.abort();
    c1.abort();
    assert.equal((await r1).reason, "cancelled");
    assert.equal((await r2).reason, "cancelled");
    assert.equal(engine.freeBlocks(), 64);
    const stepsWhenIdle = engine.steps;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(engine.steps, stepsWhenIdle, "no step runs while nothing is queued");
    assert.equal(s.runningCount + s.queueDepth, 0);
  });
});
