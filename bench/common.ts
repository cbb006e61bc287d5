// What the decode benchmarks share: argument parsing, loading a model directory (with or without a
// tokenizer), deterministic prompts that bench/transformers_decode.py reproduces bit for bit, the memory
// roofline, and writing results. Kept free of backend-specific code so both cpu-decode.ts and
// gpu-decode.ts (bundled by esbuild for the GPU machine) can import it.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import {
  type HostTensor,
  type KvStorage,
  loadModelDir,
  type ModelConfig,
  type ModelSource,
  parseModelConfig,
  readSafetensors,
} from "@specloop/engine";

/** --name value / --flag pairs; every value is a string, typed by the caller. */
export function parseArgs(argv: readonly string[], flags: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("--")) throw new RangeError(`unexpected argument ${JSON.stringify(a)}`);
    const name = a.slice(2);
    if (flags.has(name)) {
      out.set(name, "true");
      continue;
    }
    const v = argv[i + 1];
    if (v === undefined) throw new RangeError(`${a} needs a value`);
    out.set(name, v);
    i++;
  }
  return out;
}

export function intArg(args: Map<string, string>, name: string, dflt: number): number {
  const s = args.get(name);
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw new RangeError(`--${name} ${s}: expected a positive integer`);
  return n;
}

export function intListArg(args: Map<string, string>, name: string, dflt: number[]): number[] {
  const s = args.get(name);
  if (s === undefined) return dflt;
  return s.split(",").map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`--${name} ${s}: expected positive integers`);
    return n;
  });
}

export interface BenchModel {
  id: string;
  source: ModelSource;
}

/**
 * The engine's loader where the directory has a tokenizer; otherwise config.json + *.safetensors read
 * directly (as model/parity.test.ts does): the random Qwen3-0.6B-shaped checkpoint has no tokenizer, and
 * the benchmarks feed token ids, so none is needed.
 */
export async function loadBenchModel(dir: string): Promise<BenchModel> {
  const root = resolve(dir);
  const id = root.split(/[\\/]/).filter(Boolean).at(-1) ?? root;
  if (existsSync(join(root, "tokenizer.json"))) {
    const loaded = await loadModelDir(root);
    return { id, source: loaded };
  }
  const json = (f: string) => JSON.parse(readFileSync(join(root, f), "utf8")) as Record<string, unknown>;
  const gen = existsSync(join(root, "generation_config.json")) ? json("generation_config.json") : {};
  const tensors = new Map<string, HostTensor>();
  const files = readdirSync(root).filter((f) => f.endsWith(".safetensors"));
  if (files.length === 0) throw new Error(`${root}: no *.safetensors`);
  for (const f of files) {
    for (const [name, t] of (await readSafetensors(join(root, f))).tensors) tensors.set(name, t);
  }
  return { id, source: { config: parseModelConfig(json("config.json"), gen), tensors } };
}

/**
 * Prompt `seq` of a batch: `len` ids from xorshift32, in [16, min(vocab, 8192)) so that they are ordinary
 * tokens of any vocabulary (no specials at the bottom). bench/transformers_decode.py has the same function,
 * so both runs decode from identical prompts.
 */
export function benchPrompt(seq: number, len: number, vocab: number): number[] {
  const hi = Math.min(vocab, 8192);
  let x = (0x9e3779b9 + seq * 7919) >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(16 + (x % (hi - 16)));
  }
  return out;
}

/** The peak the roofline divides by: what a large device copy reaches on the H100 (shared/device/README). */
export const ROOFLINE_BYTES_PER_SECOND = 3.0e12;

/**
 * Weight bytes one decode step reads, as stored (bf16 stays 2 bytes): every tensor once; the embedding table
 * counts only when it is also the LM head (tied), since the embedding lookup itself reads a row per token.
 */
export function weightBytesPerStep(config: ModelConfig, tensors: ReadonlyMap<string, HostTensor>): number {
  let bytes = 0;
  for (const [name, t] of tensors) {
    if (name === "model.embed_tokens.weight" && !config.tieWordEmbeddings) continue;
    // A tied checkpoint may also store lm_head (a copy the engine does not use).
    if (name === "lm_head.weight" && config.tieWordEmbeddings) continue;
    bytes += t.data.byteLength;
  }
  return bytes;
}

/** Bytes per K or V element as the engine stores its cache (derived from the storage, not assumed). */
export function kvElementBytes(kv: KvStorage): number {
  const s = kv.spec;
  return kv.bytes / (2 * s.numLayers * s.numBlocks * s.blockSize * s.numKvHeads * s.headDim);
}

export interface Roofline {
  weightBytesPerStep: number;
  kvElementBytes: number;
  /** Mean over the decode steps of the KV bytes read (every sequence's context, K and V, all layers). */
  meanKvBytesPerStep: number;
  meanBytesPerStep: number;
  /** Decode tokens/s if every step only streamed its bytes at ROOFLINE_BYTES_PER_SECOND. */
  ceilingTokensPerSecond: number;
}

/**
 * The memory roofline of a greedy decode of `batch` sequences of prompt `promptLen` and `newTokens` tokens:
 * the first token comes from the prefill, so decode steps j = 0 .. newTokens - 2 each attend over
 * promptLen + j + 1 tokens per sequence (the cached ones and the new one).
 */
export function roofline(
  config: ModelConfig,
  weightBytes: number,
  kvBytesPerElement: number,
  batch: number,
  promptLen: number,
  newTokens: number,
): Roofline {
  const steps = newTokens - 1;
  const perToken = config.numLayers * 2 * config.numKvHeads * config.headDim * kvBytesPerElement;
  let kvTotal = 0;
  for (let j = 0; j < steps; j++) kvTotal += batch * (promptLen + j + 1) * perToken;
  const meanKv = steps > 0 ? kvTotal / steps : 0;
  const meanBytes = weightBytes + meanKv;
  return {
    weightBytesPerStep: weightBytes,
    kvElementBytes: kvBytesPerElement,
    meanKvBytesPerStep: meanKv,
    meanBytesPerStep: meanBytes,
    ceilingTokensPerSecond: (batch * ROOFLINE_BYTES_PER_SECOND) / meanBytes,
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export interface HostInfo {
  cpuModel: string;
  logicalCores: number;
  memoryGiB: number;
  node: string;
  platform: string;
}

/** The machine, as results record it: CPU model from /proc/cpuinfo where there is one. */
export function hostInfo(): HostInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) cpuModel = m[1].trim();
  } catch {
    // Not Linux: os.cpus() already gave the model.
  }
  return {
    cpuModel,
    logicalCores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/** Prints the result and, with --out, writes it (creating the folder). */
export function emit(result: unknown, out: string | undefined): void {
  const text = `${JSON.stringify(result, null, 2)}\n`;
  process.stdout.write(text);
  if (out !== undefined) {
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeFileSync(out, text);
  }
}

export const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;
