// The node's wiring to the bus: traces out (TracePublisher, through a spool that keeps them while NATS is
// away), speculators in (the registry watch, signatures checked against the trusted keys, and the swapper
// that installs heads between two decoding turns) and the fleet's traces in (checked against the model's
// vocabulary and context, then into the suffix tree). node.ts calls connectFleet once at open and the
// two stop calls at close; everything that talks to NATS lives here.
import { join } from "node:path";
import {
  type Bus,
  consumeTraces,
  ManifestVerifier,
  nodeSuffixConsumer,
  type RunningConsumer,
  SpeculatorRegistry,
  sanitizeToken,
  TraceRejectedError,
} from "@specloop/bus";
import type { Model } from "@specloop/engine";
import type { Logger } from "@specloop/runtime";
import type { Drafter, DrafterKind, HybridDrafter, SuffixDrafter } from "@specloop/speculation";
import { Counter, Gauge, type Registry } from "prom-client";
import type { InferenceConfig } from "./config.js";
import type { NodeMetrics } from "./metrics.js";
import type { Scheduler } from "./scheduler.js";
import { type RoutedEagleDrafter, SpeculatorSwapper, type SwapOutcome } from "./speculators.js";
import { TracePublisher } from "./traces.js";

/** What of the node the bus wiring needs. */
export interface FleetHost {
  readonly identity: { readonly nodeId: string; readonly modelId: string };
  readonly model: Model;
  readonly scheduler: Scheduler;
  readonly eagle: RoutedEagleDrafter;
  readonly hybrid: HybridDrafter;
  readonly drafters: Map<DrafterKind, Drafter>;
  readonly suffix: SuffixDrafter;
  readonly metrics: NodeMetrics;
}

export interface FleetOptions {
  config: InferenceConfig;
  logger: Logger;
  /** Where the bus wiring's own metrics are registered (the node's registry). */
  registry: Registry;
  /** Told of every speculator swap or refusal (tests wait on it). */
  onSwap?: (outcome: SwapOutcome) => void;
}

export interface FleetLink {
  /** Where finished requests' traces go; undefined when traces are off. */
  readonly traces: TracePublisher | undefined;
  /** The fleet consumer's counters (undefined when the node does not consume the fleet's traces). */
  fleetStats(): ReturnType<RunningConsumer["stats"]> | undefined;
  /** Ends the speculator watch and waits for swaps in flight (before the scheduler closes). */
  stopSwaps(): Promise<void>;
  /** Ends the fleet consumer, flushes the traces still queued, and closes the spool. */
  close(): Promise<void>;
}

/** Traces out, speculators and fleet traces in. */
export async function connectFleet(bus: Bus, host: FleetHost, options: FleetOptions): Promise<FleetLink> {
  const { config, logger } = options;
  let traces: TracePublisher | undefined;
  if (config.traces.enabled) {
    const spoolDir =
      config.bus.spool.dir === ""
        ? ""
        : join(config.bus.spool.dir, `traces-${sanitizeToken(host.identity.nodeId, "node_id")}`);
    const publisher = new TracePublisher(bus, logger, {
      spoolDir,
      maxBytes: config.bus.spool.maxBytes,
      maxMessageBytes: config.bus.traceStream.maxMessageBytes,
      onPublished: () => host.metrics.tracesPublished.inc(),
      onDropped: (reason) => host.metrics.traceDrops.inc({ reason }),
    });
    traces = publisher;
  }
  const metrics = fleetMetrics(options.registry, () => traces?.pendingBytes ?? 0);
  const verifier = ManifestVerifier.fromConfig(config.bus.manifests);
  if (verifier.keyIds.length === 0) {
    logger.warn(
      "speculators: no trusted manifest key (bus.manifests.trusted_keys / trusted_keys_file): every speculator will be refused",
    );
  }
  const registry = await SpeculatorRegistry.open(bus.js, { verifier });
  const swapper = new SpeculatorSwapper({
    registry,
    modelId: host.identity.modelId,
    target: host.model,
    eagle: host.eagle,
    atStepBoundary: async (fn) => {
      const out = await host.scheduler.runExclusive(fn);
      // Offered to requests from the first live head on (the hybrid drafts with it too).
      if (host.eagle.live !== undefined) {
        host.drafters.set("eagle", host.eagle);
        host.drafters.set("hybrid", host.hybrid);
      }
      return out;
    },
    metrics: host.metrics,
    manifestRefusals: metrics.manifestRefusals,
    logger,
    ...(options.onSwap ? { onOutcome: options.onSwap } : {}),
  });
  await swapper.start();
  let fleet: RunningConsumer | undefined;
  if (config.traces.consumeFleet) {
    // Every node's outputs (this one's included) feed the fleet suffix tree: one consumer per node, since
    // each node needs every trace (a shared one would split them between nodes). It starts a bounded
    // window back, and the server removes it once the node has been gone for the inactive threshold.
    const { replayWindowMs, inactiveThresholdMs } = config.bus.fleetConsumer;
    fleet = await consumeTraces(bus, {
      modelId: host.identity.modelId,
      durable: nodeSuffixConsumer(host.identity.nodeId),
      limits: {
        vocabSize: host.model.config.vocabSize,
        maxTokens: host.model.config.maxPositions,
        maxHiddenBytes: config.bus.traceStream.maxMessageBytes,
      },
      inactiveThresholdMs,
      startTime: new Date(Date.now() - replayWindowMs),
      logger,
      handler: (trace) => {
        if (trace.outputTokenIds.length > 0) {
          host.suffix.ingestFleetOutput(trace.outputTokenIds, trace.promptTokenIds);
        }
        return "ack";
      },
      onPoison: (delivery, err) => {
        const reason = err instanceof TraceRejectedError ? err.reason : "undecodable";
        metrics.tracesRejected.inc({ reason });
        logger.warn(
          { seq: delivery.seq, reason, err: err instanceof Error ? err.message : String(err) },
          "fleet: refused a trace",
        );
      },
    });
  }
  return {
    traces,
    fleetStats: () => fleet?.stats(),
    stopSwaps: () => swapper.stop(),
    async close() {
      await fleet?.stop();
      await traces?.flush(2_000);
      await traces?.close();
    },
  };
}

interface FleetMetrics {
  manifestRefusals: Counter<"role" | "reason">;
  tracesRejected: Counter<"reason">;
  spoolBytes: Gauge;
}

function fleetMetrics(registry: Registry, spoolBytes: () => number): FleetMetrics {
  const r = [registry];
  return {
    manifestRefusals: new Counter({
      name: "specloop_inference_speculator_manifests_refused_total",
      help: "Registry entries refused before any download, by slot and reason (malformed, unsigned, unknown_key, bad_signature, mismatch).",
      labelNames: ["role", "reason"],
      registers: r,
    }),
    tracesRejected: new Counter({
      name: "specloop_inference_fleet_traces_rejected_total",
      help: "Fleet traces refused at intake (never reaching the suffix tree), by reason (vocabulary, shape, size, undecodable).",
      labelNames: ["reason"],
      registers: r,
    }),
    spoolBytes: new Gauge({
      name: "specloop_inference_trace_spool_bytes",
      help: "Bytes of traces waiting to be published (in memory or in the spool directory).",
      registers: r,
      // Read at scrape time: the spool drains between scrapes.
      collect() {
        this.set(spoolBytes());
      },
    }),
  };
}
