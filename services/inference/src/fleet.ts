// The node's wiring to the bus: traces out (TracePublisher), speculators in (the registry watch and the
// swapper that installs heads between two decoding turns) and the fleet's traces in (the suffix tree).
// node.ts calls connectFleet once at open and the two stop calls at close; everything that talks to NATS
// lives here.
import { type Bus, consumeTraces, type RunningConsumer, SpeculatorRegistry } from "@specloop/bus";
import type { Model } from "@specloop/engine";
import type { Logger } from "@specloop/runtime";
import type { Drafter, DrafterKind, SuffixDrafter } from "@specloop/speculation";
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
  readonly drafters: Map<DrafterKind, Drafter>;
  readonly suffix: SuffixDrafter;
  readonly metrics: NodeMetrics;
}

export interface FleetOptions {
  config: InferenceConfig;
  logger: Logger;
  /** Told of every speculator swap or refusal (tests wait on it). */
  onSwap?: (outcome: SwapOutcome) => void;
}

export interface FleetLink {
  /** Where finished requests' traces go; undefined when traces are off. */
  readonly traces: TracePublisher | undefined;
  /** Ends the speculator watch and waits for swaps in flight (before the scheduler closes). */
  stopSwaps(): Promise<void>;
  /** Ends the fleet consumer and flushes the traces still queued. */
  close(): Promise<void>;
}

/** Traces out, speculators and fleet traces in. */
export async function connectFleet(bus: Bus, host: FleetHost, options: FleetOptions): Promise<FleetLink> {
  const { config, logger } = options;
  let traces: TracePublisher | undefined;
  if (config.traces.enabled) {
    traces = new TracePublisher(bus, logger, {
      bufferSize: config.traces.bufferSize,
      maxMessageBytes: config.bus.traceStream.maxMessageBytes,
      onPublished: () => host.metrics.tracesPublished.inc(),
      onDropped: (reason) => host.metrics.traceDrops.inc({ reason }),
    });
  }
  const registry = await SpeculatorRegistry.open(bus.js);
  const swapper = new SpeculatorSwapper({
    registry,
    modelId: host.identity.modelId,
    target: host.model,
    eagle: host.eagle,
    atStepBoundary: async (fn) => {
      const out = await host.scheduler.runExclusive(fn);
      // Offered to requests from the first live head on.
      if (host.eagle.live !== undefined) host.drafters.set("eagle", host.eagle);
      return out;
    },
    metrics: host.metrics,
    logger,
    ...(options.onSwap ? { onOutcome: options.onSwap } : {}),
  });
  await swapper.start();
  let fleet: RunningConsumer | undefined;
  if (config.traces.consumeFleet) {
    // Every node's outputs (this one's included) feed the fleet suffix tree: one durable consumer per
    // node, since each node needs every trace (a shared durable would split them between nodes).
    fleet = await consumeTraces(bus, {
      modelId: host.identity.modelId,
      durable: `fleet-suffix-${host.identity.nodeId.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      logger,
      handler: (trace) => {
        if (trace.outputTokenIds.length > 0) {
          host.suffix.ingestFleetOutput(trace.outputTokenIds, trace.promptTokenIds);
        }
        return "ack";
      },
    });
  }
  return {
    traces,
    stopSwaps: () => swapper.stop(),
    async close() {
      await fleet?.stop();
      await traces?.flush(2_000);
    },
  };
}
