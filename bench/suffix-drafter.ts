// The suffix drafter on its own: how fast it is (µs per ingested token, per eviction, per proposal on a
// million-token fleet tree) and, as a drafter-only proxy for acceptance, how it does on held-out text
// from the bundled prompts. The proxy treats the held-out text as what a greedy target would generate:
// each pass proposes a tree, the longest tree path that agrees with the text is "accepted", the text's
// next token is the target's own, and the pass advances by accepted + 1. The real acceptance needs the
// engine loop (the target does not generate the prompts' text); this only says whether the drafter
// finds the continuations that are in its history.
//   node --conditions=source --import tsx bench/suffix-drafter.ts [--model models/tiny-code]
//       [--fleet-tokens 1000000] [--budget 8] [--out bench/results/suffix-drafter.json]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GREEDY, Rng, Tokenizer } from "@specloop/engine";
import { type SequenceView, SuffixDrafter } from "@specloop/speculation";
import { emit, hostInfo, intArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const modelDir = args.get("model") ?? "models/tiny-code";
const fleetTokens = intArg(args, "fleet-tokens", 1_000_000);
const budget = intArg(args, "budget", 8);

function view(id: string, tokens: number[]): SequenceView {
  return { id, tokens, promptLength: tokens.length, sampling: GREEDY, remaining: 1 << 20 };
}

/** Zipf(1.1) over a 32k vocabulary: text-like unigram frequencies without text-like repetition. */
function zipfSampler(rng: Rng, vocab = 32000, s = 1.1): () => number {
  const cdf = new Float64Array(vocab);
  let acc = 0;
  for (let i = 0; i < vocab; i++) cdf[i] = acc += 1 / (i + 1) ** s;
  return () => {
    const u = rng.next() * acc;
    let lo = 0;
    let hi = vocab - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

function speed() {
  const rng = new Rng(2026);
  const next = zipfSampler(rng);
  const docLen = 256;
  const docs = Array.from({ length: Math.ceil((fleetTokens * 1.5) / docLen) }, () =>
    Int32Array.from({ length: docLen }, next),
  );
  const drafter = new SuffixDrafter({ fleetMaxTokens: fleetTokens });
  const buffersBefore = process.memoryUsage().arrayBuffers;
  const fill = Math.floor(fleetTokens / docLen);
  let t0 = performance.now();
  for (let i = 0; i < fill; i++) drafter.ingestFleetOutput(docs[i] as Int32Array);
  const fillMs = performance.now() - t0;
  const full = drafter.fleetStats();
  // Past the bound every ingest evicts about as many tokens as it adds.
  t0 = performance.now();
  for (let i = fill; i < docs.length; i++) drafter.ingestFleetOutput(docs[i] as Int32Array);
  const steadyMs = performance.now() - t0;
  const steadyTokens = (docs.length - fill) * docLen;
  const after = drafter.fleetStats();
  const buffersMiB = (process.memoryUsage().arrayBuffers - buffersBefore) / 2 ** 20;

  // Proposals: 512-token contexts that end inside a held document (long matches, the repetitive case)
  // and fresh Zipf contexts (short matches, the open-ended case). The request's tree is synced first,
  // so the time is the proposal's own (two matches and two speculations).
  const proposalUs = (contexts: number[][]): { us: number; meanNodes: number } => {
    for (let i = 0; i < contexts.length; i++) drafter.observe(view(`p${i}`, contexts[i] as number[]));
    let nodes = 0;
    const t = performance.now();
    for (let r = 0; r < 5; r++) {
      for (let i = 0; i < contexts.length; i++)
        nodes += drafter.proposeOne(view(`p${i}`, contexts[i] as number[]), budget).tokens.length;
    }
    const us = ((performance.now() - t) * 1000) / (5 * contexts.length);
    for (let i = 0; i < contexts.length; i++) drafter.release(`p${i}`);
    return { us: round(us), meanNodes: round(nodes / (5 * contexts.length)) };
  };
  const held = docs.slice(docs.length - fill);
  const inHistory = Array.from({ length: 200 }, (_, i) => {
    const d = held[(i * 7919) % held.length] as Int32Array;
    const cut = 32 + (i % 200);
    return [...Array.from({ length: 512 - cut }, next), ...d.subarray(0, cut)];
  });
  const fresh = Array.from({ length: 200 }, () => Array.from({ length: 512 }, next));
  // Observe cost: a request's tree growing over a 4k-token prompt, then token by token.
  const obs = Array.from({ length: 4096 + 512 }, next);
  t0 = performance.now();
  drafter.observe(view("o", obs.slice(0, 4096)));
  const prefillUs = ((performance.now() - t0) * 1000) / 4096;
  t0 = performance.now();
  for (let n = 4097; n <= obs.length; n++) drafter.observe(view("o", obs.slice(0, n)));
  const stepTotalUs = ((performance.now() - t0) * 1000) / 512;
  drafter.release("o");
  return {
    source: `synthetic Zipf(1.1) tokens over a 32k vocabulary, ${docLen}-token documents`,
    fleetMaxTokens: fleetTokens,
    fill: { tokens: full.tokens, usPerToken: round((fillMs * 1000) / full.tokens), nodes: full.nodes },
    steadyWithEviction: {
      tokensIngested: steadyTokens,
      usPerToken: round((steadyMs * 1000) / steadyTokens),
      tokensHeld: after.tokens,
      nodes: after.nodes,
      nodeCapacity: after.nodeCapacity,
    },
    typedArrayMiB: round(buffersMiB, 1),
    proposal: { budget, contextInHistory: proposalUs(inHistory), contextFresh: proposalUs(fresh) },
    requestTree: { usPerPromptToken: round(prefillUs), usPerObserveIncludingSliceCopy: round(stepTotalUs) },
  };
}

interface Outcome {
  passes: number;
  generated: number;
  proposed: number;
  firstHit: number;
  accepted: number;
  proposeUs: number;
}

/** Greedy verification against the text: the longest tree path that the text follows from `pos`. */
function acceptedLength(
  tokens: Int32Array,
  parents: Int32Array,
  text: readonly number[],
  pos: number,
): number {
  let parent = -1;
  let n = 0;
  for (;;) {
    let found = -1;
    for (let i = 0; i < tokens.length; i++) {
      if (parents[i] === parent && tokens[i] === text[pos + n]) {
        found = i;
        break;
      }
    }
    if (found === -1 || pos + n >= text.length) return n;
    parent = found;
    n++;
  }
}

function simulate(drafter: SuffixDrafter, texts: readonly number[][], promptLen: number): Outcome {
  const o: Outcome = { passes: 0, generated: 0, proposed: 0, firstHit: 0, accepted: 0, proposeUs: 0 };
  texts.forEach((text, k) => {
    const id = `h${k}`;
    let pos = Math.min(promptLen, text.length - 1);
    while (pos < text.length) {
      const seq = view(id, text.slice(0, pos));
      drafter.observe(seq);
      const t = performance.now();
      const p = drafter.proposeOne(seq, budget);
      o.proposeUs += (performance.now() - t) * 1000;
      const a = acceptedLength(p.tokens, p.parents, text, pos);
      o.passes++;
      if (p.tokens.length > 0) o.proposed++;
      if (p.tokens.length > 0 && p.tokens[0] === text[pos]) o.firstHit++;
      o.accepted += a;
      const step = Math.min(a + 1, text.length - pos);
      o.generated += step;
      pos += step;
    }
    drafter.release(id);
  });
  return o;
}

function summary(o: Outcome) {
  return {
    passes: o.passes,
    tokensPerPass: round(o.generated / o.passes, 3),
    proposedShare: round(o.proposed / o.passes, 3),
    firstTokenHitRate: round(o.firstHit / o.passes, 3),
    firstTokenHitRateWhenProposed: round(o.firstHit / Math.max(1, o.proposed), 3),
    acceptedPerPass: round(o.accepted / o.passes, 3),
    usPerProposal: round(o.proposeUs / o.passes),
  };
}

async function heldOut() {
  const tokenizer = await Tokenizer.fromFiles(
    join(modelDir, "tokenizer.json"),
    join(modelDir, "tokenizer_config.json"),
  );
  const promptLen = 16;
  const out: Record<string, unknown> = {};
  const domains = ["python", "c", "prose"] as const;
  const encoded = Object.fromEntries(
    domains.map((d) => {
      const lines = readFileSync(join(modelDir, "prompts", `${d}.jsonl`), "utf8")
        .split("\n")
        .filter(Boolean);
      const texts = lines.map((l) =>
        tokenizer.encode((JSON.parse(l) as { prompt: string }).prompt, { addSpecialTokens: false }),
      );
      return [d, texts];
    }),
  ) as Record<(typeof domains)[number], number[][]>;
  // Even-indexed prompts of every domain are the fleet's history; odd ones are held out.
  const fleetDocs = domains.flatMap((d) => encoded[d].filter((_, i) => i % 2 === 0));
  for (const d of domains) {
    const held = encoded[d].filter((_, i) => i % 2 === 1);
    const withFleet = new SuffixDrafter();
    for (const doc of fleetDocs) withFleet.ingestFleetOutput(doc);
    const requestOnly = new SuffixDrafter();
    // Upper bound: the same text was served before (a repeated request, an agent's retry).
    const repeated = new SuffixDrafter();
    for (const doc of held) repeated.ingestFleetOutput(doc);
    out[d] = {
      heldOutTexts: held.length,
      heldOutTokens: held.reduce((s, t) => s + t.length, 0),
      fleetTokens: fleetDocs.reduce((s, t) => s + t.length, 0),
      requestOnly: summary(simulate(requestOnly, held, promptLen)),
      requestAndFleet: summary(simulate(withFleet, held, promptLen)),
      sameTextInFleet: summary(simulate(repeated, held, promptLen)),
    };
  }
  return { promptTokens: promptLen, budget, domains: out };
}

const result = {
  bench: "suffix-drafter",
  date: new Date().toISOString().slice(0, 10),
  host: hostInfo(),
  speed: speed(),
  heldOut: await heldOut(),
};
emit(result, args.get("out"));
