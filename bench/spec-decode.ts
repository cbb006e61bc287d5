// Speculative decoding on the CPU or WebGPU (issue 5): decode speed-up over `none` of the suffix drafter after its fleet
// tree has seen a few hundred requests of the same domain, of the suffix drafter with only its per-request
// tree (cold), and of the draft model (models/tiny-code-draft), with accepted tokens per target pass.
//   node --conditions=source --import tsx bench/spec-decode.ts [--model models/tiny-code]
//       [--draft-model models/tiny-code-draft] [--backend cpu|webgpu] [--threads <all cores>] [--domains python,c,prose] [--warm 200]
//       [--warm-batch 16] [--measure 24] [--prompt 128] [--min-prompt 64] [--new 128] [--batch 1]
//       [--budgets 2,4,8] [--policy-max 16] [--growth 2] [--runs 3] [--oracle 1,2,4,8|none] [--configs NAME,...] [--spec-factor 1] [--min-prob 0.1,0.5]
//       [--temperature 0] [--out bench/results/spec-decode-cpu.json]
// Per domain:
// - warm: the target's own greedy outputs (engine generate(), batches of --warm-batch, stop tokens off) for
//   the domain's first --warm prompts are fed to a fresh SuffixDrafter with ingestFleetOutput(output, prompt),
//   as a node fed from the trace stream would; that pass also gives the engine's batched `none` tok/s;
// - measure: the domain's last --measure prompts (disjoint from the warm ones; the files have 256 a domain),
//   each cut to its first --prompt tokens (shorter than --min-prompt: skipped), --new tokens, greedy, stop
//   tokens off, through the SpeculativeDecoder (the loop speculativeGenerate runs, written out here so that
//   the budget can be the policy of budget.ts and so that each step's drafting and verification times and
//   row count are kept). Batch 1 runs the requests one after another (the latency case); batch B keeps B
//   in flight, a finished request replaced by the next at once (continuous batching, as the node does; the
//   "none (engine generate)" row alone runs static groups of B). Every configuration's outputs must equal
//   `none`'s token for token (greedy is lossless);
//   a mismatch stops the bench.
// Rows named "+cap" run the same budgets under a DraftCapTuner (shared/speculation/src/draft-cap.ts), as the
// node does by default: each step caps the budgets at the cap that has delivered the most tokens per ms.
// --runs passes over all configurations (interleaved, so that the shared machine's load spreads over all of
// them); the median decode tok/s of the runs is the figure. Prints JSON and writes it with --out; a Markdown
// table goes to stderr.
import { availableParallelism, loadavg } from "node:os";
import {
  DEFAULT_BLOCK_SIZE,
  GREEDY,
  generate,
  isBackendChoice,
  KvManager,
  loadBundledPrompts,
  loadModelDir,
  Model,
  selectBackend,
} from "@specloop/engine";
import {
  type AcceptanceStats,
  DecodeSequence,
  DraftCapTuner,
  type Drafter,
  type DrafterKind,
  DraftModelDrafter,
  type DraftRequest,
  defaultBudgetPolicyOptions,
  draftBudget,
  NO_ACCEPTANCE,
  type Proposal,
  type SequenceView,
  SpeculativeDecoder,
  SuffixDrafter,
  updateAcceptance,
} from "@specloop/speculation";
import { emit, hostInfo, intArg, intListArg, median, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const modelDir = args.get("model") ?? "models/tiny-code";
const draftDir = args.get("draft-model") ?? "models/tiny-code-draft";
const backendChoice = args.get("backend") ?? "cpu";
if (!isBackendChoice(backendChoice)) throw new RangeError(`--backend ${backendChoice}: not a backend`);
const threads = intArg(args, "threads", availableParallelism());
const domains = (args.get("domains") ?? "python,c,prose").split(",");
const warmCount = intArg(args, "warm", 200);
const warmBatch = intArg(args, "warm-batch", 16);
const measureCount = intArg(args, "measure", 24);
const promptMax = intArg(args, "prompt", 128);
const promptMin = intArg(args, "min-prompt", 64);
const newTokens = intArg(args, "new", 128);
const batches = intListArg(args, "batch", [1]);
const budgets = intListArg(args, "budgets", [2, 4, 8]);
const policyMax = intArg(args, "policy-max", 16);
/** The budget policy's nodes per accepted token (budget.ts default 2). */
const growth = Number(args.get("growth") ?? defaultBudgetPolicyOptions().growth);
const runs = intArg(args, "runs", 3);
const specFactor = Number(args.get("spec-factor") ?? "1");
// Lists: each extra value adds warm-suffix rows named "... p<minProb>" / "... f<factor>" beside the first.
const minProbs = (args.get("min-prob") ?? "0.1,0.5").split(",").map(Number);
const minProb = minProbs[0] as number;
const configFilter = args.get("configs")?.split(",");
// Sampled decoding (--temperature > 0): each request seeded by its index. Outputs then differ by drafter (each
// consumes the generator its own way), so the token-for-token check is greedy's alone; that sampled output
// keeps the target's distribution is tested in shared/speculation/src/verify.test.ts.
const temperature = Number(args.get("temperature") ?? "0");
const SAMPLING = temperature > 0 ? { temperature } : GREEDY;
const oracleBudgets = args.get("oracle") === "none" ? [] : intListArg(args, "oracle", [1, 2, 4, 8]);

const loadBefore = loadavg();
const selected = await selectBackend(backendChoice, { cpu: { threads } });
const backend = selected.backend;
for (const note of selected.notes) console.error(`backend: ${note}`);
const loaded = await loadModelDir(modelDir);
const target = Model.load(backend, loaded);
const draft = Model.load(backend, await loadModelDir(draftDir));
const vocab = target.config.vocabSize;

/** A drafter with its proposals counted per sequence (the policy's "drafted") and its time kept. */
class Counted implements Drafter {
  readonly kind: DrafterKind;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  readonly drafted = new Map<string, number>();
  proposeMs = 0;
  constructor(readonly inner: Drafter) {
    this.kind = inner.kind;
  }
  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    const t0 = performance.now();
    const out = await this.inner.propose(requests);
    this.proposeMs += performance.now() - t0;
    requests.forEach((r, i) => {
      this.drafted.set(r.seq.id, Math.min(out[i]?.tokens.length ?? 0, r.seq.remaining - 1));
    });
    return out;
  }
  observe(seq: SequenceView): void {
    this.inner.observe(seq);
  }
  release(seqId: string): void {
    this.drafted.delete(seqId);
    this.inner.release(seqId);
  }
}

/**
 * A diagnostic drafter that knows `none`'s output and proposes its next tokens as a chain: every node is
 * accepted, so its rows show what a pass of k + 1 rows costs and the speed-up a perfect drafter would reach
 * at budget k. It sits in the decoder's "eagle" slot (any kind is only a key there); no eagle runs.
 */
class Oracle implements Drafter {
  readonly kind = "eagle" as const;
  readonly version = "";
  readonly featureLayers: readonly number[] = [];
  constructor(private readonly outputs: readonly (readonly number[])[]) {}
  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    return requests.map((r) => {
      const out = this.outputs[Number(r.seq.id)] as readonly number[];
      const at = r.seq.tokens.length - r.seq.promptLength;
      const tokens = Int32Array.from(out.slice(at, at + r.budget));
      return {
        tokens,
        parents: tokens.map((_, i) => i - 1),
        draftProbs: new Float32Array(tokens.length).fill(1),
      };
    });
  }
  observe(): void {}
  release(): void {}
}

type Budget = number | "policy";
interface Config {
  name: string;
  drafter: DrafterKind;
  budget: Budget;
  /** Makes the drafter for one run (fresh per-request state; the warm fleet tree is shared). */
  make?: () => Drafter;
  /** Budgets capped by a DraftCapTuner (one per run, as a node keeps one). */
  cap?: boolean;
}

interface StepTimes {
  rows: number;
  draftMs: number;
  verifyMs: number;
}

interface RunResult {
  outputs: number[][];
  decodeTokens: number;
  decodeSeconds: number;
  verifications: number;
  proposedNodes: number;
  draftMs: number;
  verifyMs: number;
  steps: StepTimes[];
}

/** One target KV cache per batch size, shared by every run (each frees its sequences at the end). */
const kvs = new Map<number, KvManager>();
const kvBlocks = (batch: number) =>
  batch * (Math.ceil((promptMax + newTokens + Math.max(policyMax, ...budgets) + 1) / DEFAULT_BLOCK_SIZE) + 1);
function kvFor(batch: number): KvManager {
  let kv = kvs.get(batch);
  if (kv === undefined) {
    kv = new KvManager(backend, target.kvSpec(kvBlocks(batch), DEFAULT_BLOCK_SIZE));
    kvs.set(batch, kv);
  }
  return kv;
}

/** The requests through the SpeculativeDecoder, `batch` in flight (see the header). */
async function runConfig(c: Config, prompts: readonly number[][], batch: number): Promise<RunResult> {
  const inner = c.make?.();
  const counted = inner === undefined ? undefined : new Counted(inner);
  const drafters = new Map<DrafterKind, Drafter>(counted === undefined ? [] : [[c.drafter, counted]]);
  const kv = kvFor(batch);
  const policy = { ...defaultBudgetPolicyOptions(), maxBudget: policyMax, growth };
  const acceptance = new Map<string, AcceptanceStats>();
  const budgetFor = (s: DecodeSequence): number => {
    if (c.budget !== "policy") return c.budget;
    const confidence = inner instanceof SuffixDrafter ? inner.confidence(s.id) : undefined;
    return draftBudget(
      {
        acceptance: acceptance.get(s.id) ?? NO_ACCEPTANCE,
        generated: s.outputLength,
        remaining: s.remaining,
        ...(confidence === undefined ? {} : { confidence }),
        step: s.targetPasses,
      },
      policy,
    );
  };
  const draftCap = c.cap ? new DraftCapTuner() : undefined;
  const decoder = new SpeculativeDecoder({ model: target, kv, drafters, budgetFor, draftCap });
  const r = emptyRun();
  const newSequence = (i: number) =>
    new DecodeSequence({
      id: String(i),
      prompt: prompts[i] as number[],
      maxTokens: newTokens,
      sampling: SAMPLING,
      seed: i,
      stopTokenIds: [],
      drafter: c.drafter,
    });
  let started = 0;
  let decodeStart: number | undefined;
  // Batch 1: one request after another, each timed from its first token (its prefill pass outside).
  // Batch B > 1: continuous batching as a node does it: B sequences in flight, a finished one replaced at
  // once by the next prompt (whose prefill shares the pass with the others' verifications), timed from the
  // first verification to the last token. (Static groups would leave the group's tail running a shrinking
  // batch whenever speculation makes its sequences finish at different steps.)
  for (let active: DecodeSequence[] = []; started < prompts.length || active.length > 0; ) {
    while (active.length < batch && started < prompts.length) active.push(newSequence(started++));
    const step = await decoder.step(active, { prefillTokens: batch * promptMax });
    if (step.starved.length > 0) throw new Error(`${c.name}: KV starved`);
    // A sequence's first pass computes its prompt and yields its first token (no proposal: nothing is
    // drafted before the prompt is in the cache); it is the prefill, outside the decode figures.
    const verified = step.ran.filter((x) => x.tokens.length > 0 && x.seq.targetPasses > 1);
    if (step.ran.some((x) => x.tokens.length > 0)) decodeStart ??= performance.now();
    if (verified.length > 0) {
      const nodes = step.rows - step.ran.reduce((n, x) => n + x.computed, 0);
      r.verifications += verified.length;
      r.proposedNodes += nodes;
      r.draftMs += step.draftMs;
      r.verifyMs += step.verifyMs;
      r.steps.push({ rows: step.rows, draftMs: step.draftMs, verifyMs: step.verifyMs });
      for (const v of verified) {
        const drafted = counted?.drafted.get(v.seq.id) ?? 0;
        const accepted = Math.max(0, v.tokens.length - 1);
        acceptance.set(
          v.seq.id,
          updateAcceptance(acceptance.get(v.seq.id) ?? NO_ACCEPTANCE, accepted, drafted, policy),
        );
      }
    }
    for (const s of active) {
      if (!s.done) continue;
      decoder.evict(s);
      r.outputs[Number(s.id)] = s.output;
      r.decodeTokens += s.outputLength - 1;
      if (batch === 1) {
        r.decodeSeconds += (performance.now() - (decodeStart ?? performance.now())) / 1000;
        decodeStart = undefined;
      }
    }
    active = active.filter((s) => !s.done);
  }
  if (batch > 1) r.decodeSeconds = (performance.now() - (decodeStart ?? performance.now())) / 1000;
  if (kv.numFreeBlocks !== kvBlocks(batch)) throw new Error(`${c.name}: KV blocks leaked`);
  return r;
}

function emptyRun(): RunResult {
  return {
    outputs: [],
    decodeTokens: 0,
    decodeSeconds: 0,
    verifications: 0,
    proposedNodes: 0,
    draftMs: 0,
    verifyMs: 0,
    steps: [],
  };
}

/** The engine's own loop (no speculation), the same groups: the other `none` baseline. */
async function runEngine(prompts: readonly number[][], batch: number): Promise<RunResult> {
  const r = emptyRun();
  for (let g = 0; g < prompts.length; g += batch) {
    const { outputs, stats } = await generate(
      target,
      prompts.slice(g, g + batch).map((prompt, i) => ({
        prompt,
        maxTokens: newTokens,
        sampling: SAMPLING,
        seed: g + i,
        stopTokenIds: [],
      })),
    );
    for (const o of outputs) r.outputs.push(o.tokens);
    // generate() counts the prefill's token outside decode; the decoder counts every output token.
    r.decodeTokens += stats.decodeTokens;
    r.decodeSeconds += stats.decodeSeconds;
    r.verifications += stats.decodeSteps * Math.min(batch, prompts.length - g);
  }
  return r;
}

/** The same configuration with its budgets under a DraftCapTuner, named "<name>+cap". */
function capped(c: Config): Config {
  return { ...c, name: `${c.name}+cap`, cap: true };
}

function draftModelConfig(b: number): Config {
  return {
    name: `draft-model b${b}`,
    drafter: "draft-model",
    budget: b,
    make: () =>
      new DraftModelDrafter(draft, vocab, {
        numBlocks: Math.ceil((promptMax + newTokens + b + 1) / DEFAULT_BLOCK_SIZE + 1) * 8,
        blockSize: DEFAULT_BLOCK_SIZE,
        maxDepth: b,
      }),
  };
}

const all = await loadBundledPrompts(modelDir);
const tok = loaded.tokenizer;
const domainRows = [];
const table: string[] = [];

for (const domain of domains) {
  const texts = all.filter((p) => p.domain === domain).map((p) => p.prompt);
  if (texts.length < warmCount + measureCount) {
    throw new RangeError(`${domain}: ${texts.length} prompts, fewer than --warm + --measure`);
  }
  // Held-out prompts from the end of the file; the fleet's from the start.
  const measured: number[][] = [];
  for (let i = texts.length - 1; i >= warmCount && measured.length < measureCount; i--) {
    const ids = tok.encode(texts[i] as string).slice(0, promptMax);
    if (ids.length >= promptMin) measured.unshift(ids);
  }
  if (measured.length < measureCount) {
    throw new RangeError(`${domain}: only ${measured.length} held-out prompts of >= ${promptMin} tokens`);
  }

  // Warm the fleet tree with the target's outputs (and measure the engine's batched `none` meanwhile).
  const warmDrafters = minProbs.map((p) => new SuffixDrafter({ maxSpecFactor: specFactor, minTokenProb: p }));
  const warmDrafter = warmDrafters[0] as SuffixDrafter;
  const t0 = performance.now();
  let warmDecodeTokens = 0;
  let warmDecodeSeconds = 0;
  let warmPromptTokens = 0;
  for (let g = 0; g < warmCount; g += warmBatch) {
    const prompts = texts
      .slice(g, Math.min(g + warmBatch, warmCount))
      .map((t) => tok.encode(t).slice(0, promptMax));
    const { outputs, stats } = await generate(
      target,
      prompts.map((prompt) => ({
        prompt,
        maxTokens: newTokens,
        sampling: GREEDY,
        seed: 0,
        stopTokenIds: [],
      })),
    );
    warmDecodeTokens += stats.decodeTokens;
    warmDecodeSeconds += stats.decodeSeconds;
    outputs.forEach((o, i) => {
      warmPromptTokens += prompts[i]?.length ?? 0;
      for (const d of warmDrafters) d.ingestFleetOutput(o.tokens, prompts[i]);
    });
  }
  const warmSeconds = (performance.now() - t0) / 1000;
  console.error(
    `[spec-decode] ${domain}: fleet warmed with ${warmCount} outputs in ${round(warmSeconds, 1)} s ` +
      `(engine none at batch ${warmBatch}: ${round(warmDecodeTokens / warmDecodeSeconds)} tok/s)`,
  );

  const suffixOpts = { maxSpecFactor: specFactor, minTokenProb: minProb };
  // The warm drafter's fleet tree is shared by every run; the per-request trees are released per sequence.
  const configs: Config[] = [
    { name: "none", drafter: "none" as const, budget: 0 },
    ...[...budgets, "policy" as const].map(
      (b): Config => ({ name: `suffix warm b${b}`, drafter: "suffix", budget: b, make: () => warmDrafter }),
    ),
    capped({ name: "suffix warm bpolicy", drafter: "suffix", budget: "policy", make: () => warmDrafter }),
    ...warmDrafters.slice(1).flatMap((d, i) =>
      [...budgets, "policy" as const].map(
        (b): Config => ({
          name: `suffix warm b${b} p${minProbs[i + 1]}`,
          drafter: "suffix",
          budget: b,
          make: () => d,
        }),
      ),
    ),
    ...[4, "policy" as const].map(
      (b): Config => ({
        name: `suffix cold b${b}`,
        drafter: "suffix",
        budget: b,
        make: () => new SuffixDrafter(suffixOpts),
      }),
    ),
    capped({
      name: "suffix cold bpolicy",
      drafter: "suffix",
      budget: "policy",
      make: () => new SuffixDrafter(suffixOpts),
    }),
    ...[2, 4].map((b): Config => draftModelConfig(b)),
    capped(draftModelConfig(4)),
  ].filter((c) => c.name === "none" || configFilter === undefined || configFilter.includes(c.name));

  // JIT and thread warm-up: a short decode of every configuration.
  for (const c of configs) await runConfig(c, measured.slice(0, 1), 1);

  const rows = [];
  for (const batch of batches) {
    const results = new Map<string, RunResult[]>();
    for (let run = 0; run < runs; run++) {
      const engine = await runEngine(measured, batch);
      results.set("none (engine generate)", [...(results.get("none (engine generate)") ?? []), engine]);
      for (const c of configs) {
        const r = await runConfig(c, measured, batch);
        results.set(c.name, [...(results.get(c.name) ?? []), r]);
      }
    }
    const reference = (results.get("none") as RunResult[])[0] as RunResult;
    // The perfect drafter, after the fact (it needs none's outputs): the ceiling at each budget.
    for (const k of oracleBudgets) {
      const c: Config = {
        name: `oracle b${k}`,
        drafter: "eagle",
        budget: k,
        make: () => new Oracle(reference.outputs),
      };
      const rs: RunResult[] = [];
      for (let run = 0; run < runs; run++) rs.push(await runConfig(c, measured, batch));
      results.set(c.name, rs);
    }
    const noneTps = median((results.get("none") as RunResult[]).map((r) => r.decodeTokens / r.decodeSeconds));
    for (const [name, rs] of results) {
      for (const r of rs) {
        r.outputs.forEach((o, i) => {
          if (temperature > 0) return;
          const want = reference.outputs[i] as number[];
          // generate() and the decoder agree on every token; a drafter must not change any.
          if (o.length !== want.length || o.some((t, j) => t !== want[j])) {
            const j = o.findIndex((t, k) => t !== want[k]);
            throw new Error(
              `LOSSLESS VIOLATION: ${domain} batch ${batch} ${name} prompt ${i}: first difference at output ` +
                `token ${j} (${o[j]} vs none's ${want[j]})`,
            );
          }
        });
      }
      const tps = rs.map((r) => r.decodeTokens / r.decodeSeconds);
      const r0 = rs[0] as RunResult;
      const row = {
        domain,
        batch,
        config: name,
        decode_tokens_per_second: round(median(tps), 1),
        runs_tokens_per_second: tps.map((x) => round(x, 1)),
        speedup_over_none: round(median(tps) / noneTps, 2),
        accepted_per_pass: round(r0.decodeTokens / r0.verifications, 2),
        proposed_nodes_per_pass: round(r0.proposedNodes / r0.verifications, 2),
        draft_ms_share:
          r0.verifyMs > 0 ? round(median(rs.map((r) => r.draftMs / (r.draftMs + r.verifyMs))), 3) : undefined,
        ms_per_pass:
          r0.steps.length > 0 ? round(median(rs.map((r) => r.verifyMs / r.steps.length)), 3) : undefined,
        draft_ms_per_pass:
          r0.steps.length > 0 ? round(median(rs.map((r) => r.draftMs / r.steps.length)), 3) : undefined,
        verify_ms_by_rows: verifyByRows(rs.flatMap((r) => r.steps)),
      };
      rows.push(row);
      table.push(
        `| ${domain} | ${batch} | ${name} | ${row.decode_tokens_per_second} | ${row.speedup_over_none}x | ` +
          `${row.accepted_per_pass} | ${row.proposed_nodes_per_pass} | ${row.ms_per_pass ?? "-"} | ` +
          `${row.draft_ms_per_pass ?? "-"} |`,
      );
      console.error(`[spec-decode] ${table.at(-1)}`);
    }
  }
  domainRows.push({
    domain,
    warm: {
      prompts: warmCount,
      batch: warmBatch,
      prompt_tokens: warmPromptTokens,
      output_tokens: warmCount * newTokens,
      seconds: round(warmSeconds, 1),
      engine_none_tokens_per_second: round(warmDecodeTokens / warmDecodeSeconds, 1),
      fleet_tree: warmDrafter.fleetStats(),
    },
    measured_prompts: measured.length,
    mean_prompt_tokens: round(measured.reduce((n, p) => n + p.length, 0) / measured.length, 1),
    rows,
  });
}

/** Median verification-pass milliseconds per row count (batch 1: 1 + proposed nodes), with counts. */
function verifyByRows(steps: readonly StepTimes[]): { rows: number; passes: number; ms: number }[] {
  const by = new Map<number, number[]>();
  for (const s of steps) by.set(s.rows, [...(by.get(s.rows) ?? []), s.verifyMs]);
  return [...by]
    .sort((a, b) => a[0] - b[0])
    .map(([rows, ms]) => ({ rows, passes: ms.length, ms: round(median(ms), 3) }));
}

backend.destroy();
console.error(
  [
    "| domain | batch | drafter | decode tok/s | vs none | tokens / pass | nodes / pass | ms / pass | draft ms / pass |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ...table,
  ].join("\n"),
);
emit(
  {
    benchmark: "spec-decode",
    date: new Date().toISOString(),
    host: hostInfo(),
    command: `node --conditions=source --import tsx bench/spec-decode.ts ${process.argv.slice(2).join(" ")}`,
    load_average_before: loadBefore.map((x) => round(x)),
    load_average_after: loadavg().map((x) => round(x)),
    model: modelDir.split("/").filter(Boolean).at(-1),
    draft_model: draftDir.split("/").filter(Boolean).at(-1),
    backend: selected.used,
    backend_notes: selected.notes,
    threads: selected.used === "cpu" ? threads : undefined,
    new_tokens: newTokens,
    prompt_tokens_max: promptMax,
    prompt_tokens_min: promptMin,
    runs,
    greedy: temperature === 0,
    temperature,
    suffix_options: { maxSpecFactor: specFactor, minTokenProb: minProbs },
    budget_policy: { ...defaultBudgetPolicyOptions(), maxBudget: policyMax, growth },
    domains: domainRows,
  },
  args.get("out"),
);
