// Plain generation, no speculation (gpt-fast's prefill + decode_one_token): every sequence's prompt goes
// through one batched pass, then each step feeds every unfinished sequence its last token in one pass,
// until it samples a stop token or reaches its token limit. Sequences of different lengths share passes.
// Greedy batches on a backend that keeps ids on the device (Backend.argmaxIds) run one step ahead: step
// n + 1 is recorded from step n's argmax while the device still runs step n, and step n's ids are read
// when step n + 1 is on its way (see decodeAhead).
import type { Activation, Backend, TokenIds } from "./backend.js";
import { KvCacheFullError } from "./errors.js";
import { buildLayout } from "./kv/layout.js";
import { KvManager } from "./kv/manager.js";
import type { Model } from "./model/model.js";
import { Rng, randomSeed } from "./sampling/rng.js";
import { checkSamplingParams, GREEDY, type SamplingParams, sample } from "./sampling/sample.js";

export const DEFAULT_BLOCK_SIZE = 16;

export interface GenerateRequest {
  prompt: readonly number[];
  maxTokens: number;
  sampling?: SamplingParams;
  /** Seeds this request's sampling; random (and reported) when absent. */
  seed?: number;
  /** Ids that end generation (default: the model's eos ids); the stop token is kept in the output. */
  stopTokenIds?: readonly number[];
}

export interface GenerateOutput {
  tokens: number[];
  finishReason: "stop" | "length";
  seed: number;
}

export interface GenerateStats {
  prefillTokens: number;
  prefillSeconds: number;
  /** Tokens produced by decode passes (each sequence's first token comes from the prefill). */
  decodeTokens: number;
  decodeSeconds: number;
  decodeSteps: number;
  decodeTokensPerSecond: number;
}

export interface GenerateOptions {
  blockSize?: number;
  /** KV blocks to allocate (default: exactly enough for every request's prompt and maxTokens). */
  numBlocks?: number;
}

interface Running {
  id: string;
  request: GenerateRequest;
  rng: Rng;
  stop: ReadonlySet<number>;
  out: GenerateOutput;
  done: boolean;
}

function isGreedy(r: GenerateRequest): boolean {
  return (r.sampling ?? GREEDY).temperature === 0;
}

/** Samples one token per logits row; greedy batches read back only the argmax ids. */
async function pick(model: Model, logits: Activation, seqs: Running[]): Promise<number[]> {
  const be = model.backend;
  if (seqs.every((s) => isGreedy(s.request))) {
    return Array.from(await be.argmaxRows(logits));
  }
  const rows = await be.readRows(logits);
  const vocab = rows.length / seqs.length;
  return seqs.map((s, i) =>
    sample(rows.subarray(i * vocab, (i + 1) * vocab), s.request.sampling ?? GREEDY, s.rng),
  );
}

function accept(s: Running, token: number): void {
  s.out.tokens.push(token);
  if (s.stop.has(token)) {
    s.out.finishReason = "stop";
    s.done = true;
  } else if (s.out.tokens.length >= s.request.maxTokens) {
    s.done = true;
  }
}

type DeviceIdsBackend = Backend & Required<Pick<Backend, "argmaxIds" | "embedIds" | "readIds">>;

/** A decode step recorded and not yet read: its sequences (its rows, in order), their ids, the ids' read. */
interface InFlight {
  seqs: Running[];
  ids: TokenIds;
  read: Promise<Int32Array>;
}

/**
 * Greedy decoding one step ahead: while the device runs step n (and its ids are being read), step n + 1 is
 * recorded with step n's argmax as its input ids, so the recording of a step overlaps the device's work on
 * the one before instead of waiting for its read. Which sequences step n + 1 holds is known without step
 * n's ids (each token limit is a count), except for stop tokens: a sequence that stops at step n has a
 * wasted row in step n + 1, whose token is dropped (its KV slot is past the sequence's end). Whenever the
 * next step's sequences differ from the in-flight step's (a limit reached, a stop), the in-flight step is
 * read first and the next step starts from the host's ids. Returns tokens accepted and passes run.
 */
async function decodeAhead(
  model: Model,
  be: DeviceIdsBackend,
  kv: KvManager,
  seqs: Running[],
  grow: (s: Running, n: number) => void,
): Promise<{ tokens: number; steps: number }> {
  let tokens = 0;
  let steps = 0;
  let inFlight: InFlight | null = null;
  const land = async (step: InFlight) => {
    const ids = await step.read;
    step.seqs.forEach((s, i) => {
      if (s.done) return; // stopped at the step before: this row was recorded ahead for nothing
      accept(s, ids[i] as number);
      tokens++;
    });
  };
  for (;;) {
    const pending: Running[] | undefined = inFlight?.seqs;
    // The sequences the next step is for: unfinished once the in-flight step's tokens are counted.
    const next: Running[] = seqs.filter(
      (s) => !s.done && s.out.tokens.length + (pending?.includes(s) ? 1 : 0) < s.request.maxTokens,
    );
    const chained = pending !== undefined && sameSequences(pending, next);
    if (next.length === 0 || (inFlight !== null && !chained)) {
      if (inFlight === null) break;
      await land(inFlight);
      inFlight = null;
      continue;
    }
    if (inFlight === null) for (const s of next) grow(s, 1);
    else if (!next.every((s) => kv.allocateSlots(s.id, 1) !== null)) {
      // The pool is short: a slot may be free once the in-flight step says who stopped (each call makes room
      // past the cached tokens, so the ones that succeeded are not counted twice).
      await land(inFlight);
      inFlight = null;
      continue;
    }
    const layout = buildLayout(
      kv,
      next.map((s) => ({ seq: s.id, newTokens: 1 })),
    );
    const input = inFlight ? inFlight.ids : Int32Array.from(next, (s) => s.out.tokens.at(-1) as number);
    const { logits } = model.forward(kv.storage, layout, input);
    const ids = be.argmaxIds(logits!);
    be.release(logits!);
    for (const s of next) kv.commit(s.id, 1);
    steps++;
    const previous = inFlight;
    inFlight = { seqs: next, ids, read: be.readIds(ids) };
    if (previous) await land(previous);
  }
  return { tokens, steps };
}

function sameSequences(a: readonly Running[], b: readonly Running[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

export async function generate(
  model: Model,
  requests: readonly GenerateRequest[],
  options: GenerateOptions = {},
): Promise<{ outputs: GenerateOutput[]; stats: GenerateStats }> {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  for (const r of requests) {
    if (r.prompt.length === 0) throw new RangeError("generate: an empty prompt (give at least one token)");
    if (!(Number.isInteger(r.maxTokens) && r.maxTokens > 0))
      throw new RangeError(`generate: maxTokens ${r.maxTokens}`);
    checkSamplingParams(r.sampling ?? GREEDY);
  }
  const numBlocks =
    options.numBlocks ??
    requests.reduce((n, r) => n + Math.ceil((r.prompt.length + r.maxTokens) / blockSize), 0);
  const kv = new KvManager(model.backend, model.kvSpec(numBlocks, blockSize));
  const seqs: Running[] = requests.map((request, i) => {
    const seed = request.seed ?? randomSeed();
    return {
      id: String(i),
      request,
      rng: new Rng(seed),
      stop: new Set(request.stopTokenIds ?? model.config.eosTokenIds),
      out: { tokens: [], finishReason: "length", seed },
      done: false,
    };
  });
  const grow = (s: Running, n: number) => {
    if (kv.allocateSlots(s.id, n) === null) {
      throw new KvCacheFullError(
        `generate: no KV blocks left for sequence ${s.id} (${numBlocks} blocks of ${blockSize})`,
      );
    }
  };

  // Prefill: every prompt in one pass, logits of each sequence's last row.
  let t0 = performance.now();
  for (const s of seqs) grow(s, s.request.prompt.length);
  const prefill = buildLayout(
    kv,
    seqs.map((s) => ({ seq: s.id, newTokens: s.request.prompt.length })),
  );
  const first = model.forward(kv.storage, prefill, Int32Array.from(seqs.flatMap((s) => s.request.prompt)));
  const firstTokens = await pick(model, first.logits!, seqs);
  model.backend.release(first.logits!);
  seqs.forEach((s, i) => {
    kv.commit(s.id, s.request.prompt.length);
    accept(s, firstTokens[i] as number);
  });
  const prefillSeconds = (performance.now() - t0) / 1000;

  // Decode: one token per unfinished sequence per pass.
  t0 = performance.now();
  let decodeTokens = 0;
  let decodeSteps = 0;
  const be = model.backend;
  if (be.argmaxIds && be.embedIds && be.readIds && seqs.every((s) => isGreedy(s.request))) {
    const ahead = await decodeAhead(model, be as DeviceIdsBackend, kv, seqs, grow);
    decodeTokens = ahead.tokens;
    decodeSteps = ahead.steps;
  }
  for (let active = seqs.filter((s) => !s.done); active.length > 0; active = active.filter((s) => !s.done)) {
    for (const s of active) grow(s, 1);
    const layout = buildLayout(
      kv,
      active.map((s) => ({ seq: s.id, newTokens: 1 })),
    );
    const ids = Int32Array.from(active, (s) => s.out.tokens.at(-1) as number);
    const { logits } = model.forward(kv.storage, layout, ids);
    const next = await pick(model, logits!, active);
    model.backend.release(logits!);
    active.forEach((s, i) => {
      kv.commit(s.id, 1);
      accept(s, next[i] as number);
    });
    decodeTokens += active.length;
    decodeSteps++;
  }
  const decodeSeconds = (performance.now() - t0) / 1000;
  for (const s of seqs) kv.free(s.id);
  return {
    outputs: seqs.map((s) => s.out),
    stats: {
      prefillTokens: requests.reduce((n, r) => n + r.prompt.length, 0),
      prefillSeconds,
      decodeTokens,
      decodeSeconds,
      decodeSteps,
      decodeTokensPerSecond: decodeSeconds > 0 ? decodeTokens / decodeSeconds : 0,
    },
  };
}
