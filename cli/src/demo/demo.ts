// The demo behind `npm start`: a workload from the bundled prompts whose domain shifts over time (python,
// then c, then prose), spread over the inference nodes as real Generate calls (remoteGenerate, as `specloop
// generate` makes them), and a live view per speculator version of what the loop achieves: accepted tokens
// per target pass, decode tok/s against plain decoding, the trainer's canary, promote, reject and rollback
// decisions as they happen (TrainerFeed over the CLI's TrainerApi), and the current domain.
//
// How far the workload got is kept in a small JSON file (the data dir's demo.json), so a restarted demo
// goes on in the same domain; the versions and their history come from the trainer, which keeps them.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import type { ServiceError } from "@grpc/grpc-js";
import { remoteGenerate } from "../commands/generate.js";
import { parseConfigAssignments } from "../commands/training-config.js";
import type { TrainerOptions } from "../options.js";
import { TrainerApi } from "../trainer-client.js";
import { DemoTally } from "./tally.js";
import { type Decision, TrainerFeed } from "./trainer-feed.js";
import { DemoView, type ViewSink } from "./view.js";
import { DemoPrompts, domainAt, drafterAt } from "./workload.js";

export interface DemoNode {
  id: string;
  address: string;
}

export interface DemoOptions {
  nodes: readonly DemoNode[];
  trainer: TrainerOptions;
  modelDir: string;
  /** Where the workload's position is kept across restarts. */
  stateFile: string;
  /** Requests per domain before the workload moves to the next. */
  phaseRequests: number;
  /** Requests in flight per node (the node batches them). */
  concurrencyPerNode: number;
  maxTokens: number;
  /** Prompts are cut to this many characters (the bundled ones run to a few hundred). */
  promptChars: number;
  /** Between two reports when the output is not a terminal, milliseconds. */
  reportEveryMs: number;
  /**
   * `trainer config set` assignments the demo makes first (KEY=VALUE, proto names), so that versions are
   * published and canaried within minutes instead of the production cadence; empty: none.
   */
  trainerConfig: readonly string[];
  out: ViewSink;
}

interface DemoState {
  requests: number;
}

function readState(file: string): DemoState {
  if (!existsSync(file)) return { requests: 0 };
  try {
    const s = JSON.parse(readFileSync(file, "utf8")) as Partial<DemoState>;
    return { requests: Number.isInteger(s.requests) && (s.requests ?? 0) >= 0 ? (s.requests as number) : 0 };
  } catch {
    return { requests: 0 };
  }
}

function writeState(file: string, state: DemoState): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state)}\n`);
  renameSync(`${file}.tmp`, file);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });

/**
 * Runs until `signal` aborts: stops sending, waits for the calls in flight, keeps the workload's position,
 * draws a last report and resolves.
 */
export async function runDemo(options: DemoOptions, signal: AbortSignal): Promise<void> {
  const view = new DemoView(options.out, options.reportEveryMs);
  const prompts = await DemoPrompts.load(options.modelDir, options.promptChars);
  const api = new TrainerApi(options.trainer);
  const feed = new TrainerFeed(api);
  const tally = new DemoTally();
  const state = readState(options.stateFile);
  const startedAt = Date.now();
  const firstRequest = state.requests;
  const decisions: Decision[] = [];
  let next = state.requests;
  // Requests finished, answered or failed, in all runs: where a restarted demo goes on.
  const position = (): DemoState => ({ requests: firstRequest + tally.requests + tally.errors });

  try {
    if (options.trainerConfig.length > 0) {
      const { config, updateFields } = parseConfigAssignments(options.trainerConfig);
      try {
        await api.updateConfig(config, updateFields);
        view.say(`trainer config set ${options.trainerConfig.join(" ")} (versions come within minutes)`);
      } catch (err) {
        view.say(`could not set the trainer's config (${(err as ServiceError).details ?? err}); going on`);
      }
    }
    for (const d of await feed.poll()) decisions.push(d);
    const st = feed.status;
    view.say(
      st === undefined
        ? `the trainer does not answer yet (${feed.error})`
        : `trainer at step ${st.trainingSteps}, ${st.tracesConsumed} traces consumed, ` +
            `live ${st.liveVersionId || "none"}${st.canaryVersionId ? `, canary ${st.canaryVersionId}` : ""}, ` +
            `${feed.versions.length} versions; workload at request ${state.requests} ` +
            `(${domainAt(state.requests, options.phaseRequests)})`,
    );
    for (const d of decisions) view.decision(d);

    const snapshot = () => {
      const st = feed.status;
      const elapsed = (Date.now() - startedAt) / 1000;
      return {
        elapsedSeconds: elapsed,
        domain: domainAt(next, options.phaseRequests),
        phaseRequests: options.phaseRequests,
        totalRequests: firstRequest + tally.requests,
        requestsPerSecond: elapsed > 0 ? tally.requests / elapsed : 0,
        perNode: tally.perNode,
        trainer:
          st === undefined
            ? `not answering (${feed.error})`
            : `step ${st.trainingSteps}, loss ${st.recentLoss.toFixed(3)}, ${st.tracesConsumed} traces consumed, ` +
              `live ${st.liveVersionId || "-"}, canary ${st.canaryVersionId || "-"}` +
              (feed.error ? ` (last poll failed: ${feed.error})` : ""),
        rows: tally.rows(),
        statusOf: (v: string) => feed.statusOf(v),
        decisions,
        errors: tally.errors,
        lastError: tally.lastError,
      };
    };

    // Each worker sends one request at a time to its node; a node has `concurrencyPerNode` workers.
    const worker = async (node: (typeof options.nodes)[number]) => {
      while (!signal.aborted) {
        const index = next++;
        const domain = domainAt(index, options.phaseRequests);
        const drafter = drafterAt(index);
        // The version that drafted, from the first chunk that names one: the node's last chunk names the
        // live version even for a request the canary drafted (its routing is released by then).
        let draftedBy = "";
        try {
          const r = await remoteGenerate(
            {
              server: node.address,
              prompt: prompts.at(index, domain),
              maxTokens: options.maxTokens,
              temperature: 0,
              drafter,
              domain,
              timeoutMs: 60_000,
            },
            undefined,
            (chunk) => {
              if (draftedBy === "") draftedBy = chunk.stats?.speculatorVersion ?? "";
            },
          );
          const version = draftedBy || (r.stats?.speculatorVersion ?? "");
          tally.add({ node: node.id, domain, drafter, version, stats: r.stats, usage: r.usage });
        } catch (err) {
          const e = err as Partial<ServiceError>;
          tally.fail(`${node.id} ${drafter}: ${e.details ?? e.message ?? String(err)}`);
          // The node may not hold a head yet (eagle before day 0 arrives) or be busy: back off a little.
          await sleep(500, signal);
        }
        if ((tally.requests + tally.errors) % 10 === 0) writeState(options.stateFile, position());
      }
    };
    const poller = async () => {
      while (!signal.aborted) {
        await sleep(2_000, signal);
        for (const d of await feed.poll()) {
          decisions.push(d);
          view.decision(d);
        }
      }
    };
    const drawer = async () => {
      while (!signal.aborted) {
        view.draw(snapshot());
        await sleep(view.live ? 1_000 : 500, signal);
      }
    };
    const workers = options.nodes.flatMap((n) =>
      Array.from({ length: options.concurrencyPerNode }, () => worker(n)),
    );
    await Promise.all([...workers, poller(), drawer()]);
    writeState(options.stateFile, position());
    view.draw(snapshot(), Date.now(), true);
    view.say(`stopped after ${tally.requests} requests (${firstRequest + tally.requests} in all)`);
  } finally {
    api.close();
  }
}
