// Hot-swap under load (issue 16, "Scale, measured" 2): what a new speculator version every 2 s costs the
// users of a busy node. A real inference node on the bundled model (cpu backend) with its gRPC API on
// loopback and a real nats-server; 16 concurrent Generate streams (eagle drafter, bundled prompts, greedy,
// --new tokens each, a new request as soon as one ends) for --seconds, in rounds alternating between no
// swaps and a new signed head published to the live slot every --every ms from a thread of its own, as the
// trainer would from its process (pre-made random heads; the node downloads, checks, uploads and swaps each
// at a step boundary).
//   node --conditions=source --import tsx bench/hot-swap-load.ts [--streams 16] [--seconds 20]
//       [--every 2000] [--rounds 2] [--new 48] [--threads 1] [--out bench/results/hot-swap-load.json]
// A third condition publishes the same heads at the same rate to another model's slot: the bus and CPU
// load of publishing without any swap on the node, which on one small machine is not the node's doing.
// Measured per condition: the gap between consecutive chunks of a stream (what a user sees: a chunk carries
// the tokens one step committed) and the inter-token latency (each gap spread over the chunk's tokens),
// p50/p90/p99/max; tokens/s over all streams; swaps that took effect. Aim: p99 with swaps within 1.2x of
// p99 without.
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Worker } from "node:worker_threads";
import { credentials } from "@grpc/grpc-js";
import { connectBus, ManifestSigner, provisionBus, SpeculatorRegistry, writeSigningKey } from "@specloop/bus";
import { bundledPromptTokens, loadModelDir, randomEagleWeights } from "@specloop/engine";
import { InferenceNode, inferenceConfigSchema, inferenceServer } from "@specloop/inference";
import {
  Drafter,
  GenerateRequest,
  type GenerateResponse,
  InferenceClient,
  InferenceService,
  SERVICE_NAMES,
  SpeculatorManifest,
  SpeculatorRole,
} from "@specloop/proto";
import { createLogger, loadConfig, startGrpcServer } from "@specloop/runtime";
import { startNatsServer } from "@specloop/testkit";
import { Registry } from "prom-client";
import { emit, hostInfo, intArg, parseArgs, round } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const streams = intArg(args, "streams", 16);
const seconds = Number(args.get("seconds") ?? "20");
const everyMs = intArg(args, "every", 2000);
const rounds = intArg(args, "rounds", 2);
const newTokens = intArg(args, "new", 48);
const threads = intArg(args, "threads", 1);
const MODELS = new URL("../models/", import.meta.url).pathname;
const logger = createLogger("hot-swap-load", "warn");

const work = mkdtempSync(join(tmpdir(), "specloop-hot-swap-"));
const keys = writeSigningKey(join(work, "keys"));
const nats = await startNatsServer();
const config = loadConfig(inferenceConfigSchema, {
  env: {
    SPECLOOP_BUS__URLS: nats.url,
    SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS_FILE: keys.publicKeyFile,
    SPECLOOP_NODE__MODEL_DIR: `${MODELS}tiny-code`,
    SPECLOOP_NODE__CPU_THREADS: String(threads),
    SPECLOOP_NODE__ID: "hot-swap-bench",
    SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: "",
    SPECLOOP_SCHEDULER__MAX_BATCH: String(streams),
  },
});
const bus = await connectBus(config.bus, logger);
await provisionBus(bus, config.bus, logger);
const registry = await SpeculatorRegistry.open(bus.js, { signer: ManifestSigner.fromFile(keys.keyFile) });
let swaps = 0;
let lastSwapped = "";
const node = await InferenceNode.open({
  config,
  logger,
  registry: new Registry(),
  bus,
  onSwap: (o) => {
    if (o.outcome === "swapped") {
      swapSeconds.push(o.seconds);
      swaps++;
      lastSwapped = o.versionId;
    }
  },
});
const server = await startGrpcServer({
  port: 0,
  logger,
  services: [
    { name: SERVICE_NAMES.inference, definition: InferenceService, implementation: inferenceServer(node) },
  ],
});
const client = new InferenceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
const loaded = await loadModelDir(`${MODELS}tiny-code`);
const prompts = await bundledPromptTokens(`${MODELS}tiny-code`, loaded.tokenizer, {
  perDomain: 16,
  maxTokens: 64,
});
const heads = Array.from({ length: 8 }, (_, i) => randomEagleWeights(loaded.config, { seed: i }));
let published = 0;
const publishMs: number[] = [];
const swapSeconds: number[] = [];

async function publish(): Promise<string> {
  const versionId = `bench-v${published}`;
  const t0 = performance.now();
  await registry.publish({
    manifest: SpeculatorManifest.fromPartial({
      modelId: "tiny-code",
      versionId,
      role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
      architecture: "eagle-v1",
    }),
    blob: heads[published % heads.length] as Uint8Array,
  });
  publishMs.push(performance.now() - t0);
  published++;
  return versionId;
}

async function waitSwapped(versionId: string): Promise<void> {
  const until = Date.now() + 60_000;
  while (lastSwapped !== versionId) {
    if (Date.now() > until) throw new Error(`${versionId} was never swapped in`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The trainer's side on its own thread (hot-swap-publisher.ts), so publishing a blob does not borrow the
 * node's event loop (the bench runs the node in this process; a trainer is a process of its own).
 */
function startPublisher(modelId: string): Worker {
  const body = new URL("./hot-swap-publisher.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const source = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(body)}); });`;
  const worker = new Worker(source, {
    eval: true,
    workerData: { bus: config.bus, keyFile: keys.keyFile, heads, everyMs, first: published, modelId },
  });
  worker.on("message", (m: { versionId?: string; ms?: number; stopped?: number }) => {
    if (m.versionId !== undefined && m.ms !== undefined && modelId === "tiny-code") {
      publishMs.push(m.ms);
      published++;
    }
  });
  return worker;
}

async function stopPublisher(worker: Worker): Promise<void> {
  const stopped = new Promise<void>((resolve) =>
    worker.on("message", (m: { stopped?: number }) => {
      if (m.stopped !== undefined) resolve();
    }),
  );
  worker.postMessage("stop");
  await stopped;
  await worker.terminate();
}

/** One stream's requests until the deadline; the gaps between its chunks and their token counts. */
async function streamLoop(
  index: number,
  deadline: number,
  gaps: number[],
  perToken: number[],
): Promise<number> {
  let tokens = 0;
  for (let r = 0; Date.now() < deadline; r++) {
    const prompt = prompts[(index * 7 + r) % prompts.length] as number[];
    await new Promise<void>((resolve, reject) => {
      let last = -1;
      const s = client.generate(
        GenerateRequest.fromPartial({
          promptTokenIds: prompt,
          maxTokens: newTokens,
          sampling: { stopTokenIds: [] },
          speculation: { drafter: Drafter.DRAFTER_EAGLE },
        }),
      );
      s.on("data", (c: GenerateResponse) => {
        const now = performance.now();
        const n = c.tokenIds.length;
        if (n === 0) return;
        // The first chunk's wait is the prefill (time to first token), not an inter-token gap.
        if (last >= 0) {
          gaps.push(now - last);
          for (let i = 0; i < n; i++) perToken.push((now - last) / n);
        }
        last = now;
        tokens += n;
      });
      s.on("error", reject);
      s.on("end", () => resolve());
    });
  }
  return tokens;
}

function quantiles(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0;
  return {
    n: s.length,
    p50: round(q(0.5), 2),
    p90: round(q(0.9), 2),
    p99: round(q(0.99), 2),
    max: round(q(1), 2),
  };
}

interface Condition {
  /** The longest the event loop was blocked (ms), per round. */
  loopStallMs: number[];
  gaps: number[];
  perToken: number[];
  tokens: number;
  seconds: number;
  swaps: number;
}

/** One round: no publishing, publishing to another model (the bus and CPU load alone), or swapping. */
async function run(mode: "none" | "publish-other" | "swap", into: Condition): Promise<void> {
  const withSwaps = mode === "swap";
  const deadline = Date.now() + seconds * 1000;
  const swapsBefore = swaps;
  const publisher =
    mode === "none" ? undefined : startPublisher(mode === "swap" ? "tiny-code" : "other-model");
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const t0 = performance.now();
  const tokens = await Promise.all(
    Array.from({ length: streams }, (_, i) => streamLoop(i, deadline, into.gaps, into.perToken)),
  );
  if (publisher !== undefined) await stopPublisher(publisher);
  loop.disable();
  into.loopStallMs.push(round(loop.max / 1e6, 1));
  into.seconds += (performance.now() - t0) / 1000;
  into.tokens += tokens.reduce((a, b) => a + b, 0);
  into.swaps += swaps - swapsBefore;
  // The next round starts from a settled node: the last head published is in.
  if (withSwaps) await waitSwapped(`bench-v${published - 1}`);
}

const loadBefore = loadavg()[0];
await waitSwapped(await publish());
const condition = (): Condition => ({
  loopStallMs: [],
  gaps: [],
  perToken: [],
  tokens: 0,
  seconds: 0,
  swaps: 0,
});
const none = condition();
const publishing = condition();
const swapping = condition();
for (let r = 0; r < rounds; r++) {
  await run("none", none);
  await run("publish-other", publishing);
  await run("swap", swapping);
  console.error(`round ${r + 1}/${rounds} done (${swapping.swaps} swaps so far)`);
}
const summary = (c: Condition) => ({
  seconds: round(c.seconds, 1),
  tokensPerSecond: round(c.tokens / c.seconds, 1),
  swaps: c.swaps,
  longestEventLoopStallMs: c.loopStallMs,
  chunkGapMs: quantiles(c.gaps),
  interTokenMs: quantiles(c.perToken),
});
const a = summary(none);
const p = summary(publishing);
const b = summary(swapping);
client.close();
await server.shutdown("bench done");
await node.close();
await bus.close();
await nats.stop();
rmSync(work, { recursive: true, force: true });
emit(
  {
    bench: "hot-swap-load",
    machine: hostInfo(),
    loadAverage: { before: loadBefore, after: loadavg()[0] },
    streams,
    secondsPerRound: seconds,
    rounds,
    swapEveryMs: everyMs,
    newTokens,
    threads,
    publishMs: quantiles(publishMs),
    swapSeconds: quantiles(swapSeconds),
    noSwaps: a,
    publishingOtherModel: p,
    withSwaps: b,
    p99Ratio: {
      chunkGap: round(b.chunkGapMs.p99 / a.chunkGapMs.p99, 3),
      interToken: round(b.interTokenMs.p99 / a.interTokenMs.p99, 3),
      chunkGapVsPublishing: round(b.chunkGapMs.p99 / p.chunkGapMs.p99, 3),
    },
  },
  args.get("out"),
);
