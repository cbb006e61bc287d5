// Plain generation, no speculation (gpt-fast's prefill + decode_one_token): every sequence's prompt goes
// through one batched pass, then each step feeds every unfinished sequence its last token in one pass,
// until it samples a stop token or reaches its token limit. Sequences of different lengths share passes.
import type { Activation } from "./backend.js";
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

/** Samples one token per logits row; greedy batches read back only the argmax ids. */
async function pick(model: Model, logits: Activation, seqs: Running[]): Promise<number[]> {
  const be = model.backend;
  if (seqs.every((s) => (s.request.sampling ?? GREEDY).temperature === 0)) {
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
