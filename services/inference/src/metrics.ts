// The node's Prometheus metrics (beside the gRPC server metrics the runtime kit records). Names carry the
// specloop_inference_ prefix; rates (tokens/s) come from the counters with rate().
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface NodeMetrics {
  outputTokens: Counter<"drafter">;
  targetPasses: Counter<"drafter">;
  acceptedPerPass: Histogram<"drafter" | "version">;
  stepSeconds: Histogram;
  stepRows: Histogram;
  queueDepth: Gauge;
  running: Gauge;
  kvBlocksUsed: Gauge;
  kvBlocksTotal: Gauge;
  tracesPublished: Counter;
  traceDrops: Counter<"reason">;
  swaps: Counter<"role" | "outcome">;
  swapSeconds: Histogram<"role">;
  requests: Counter<"finish_reason">;
  refusedProposals: Counter<"drafter">;
}

/** State the gauges read at scrape time (so they are true at idle, not only as of the last step). */
export interface NodeGaugeSources {
  queueDepth(): number;
  running(): number;
  kvBlocksUsed(): number;
  kvBlocksTotal(): number;
}

export function nodeMetrics(registry: Registry, state: NodeGaugeSources): NodeMetrics {
  const r = [registry];
  return {
    outputTokens: new Counter({
      name: "specloop_inference_output_tokens_total",
      help: "Output tokens committed, by the drafter that ran.",
      labelNames: ["drafter"],
      registers: r,
    }),
    targetPasses: new Counter({
      name: "specloop_inference_target_passes_total",
      help: "Verification passes of the target, per sequence, by drafter.",
      labelNames: ["drafter"],
      registers: r,
    }),
    acceptedPerPass: new Histogram({
      name: "specloop_inference_accepted_per_pass",
      help: "Output tokens per target pass of one request (accepted drafts + 1), by drafter and speculator version.",
      labelNames: ["drafter", "version"],
      buckets: [1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 8],
      registers: r,
    }),
    stepSeconds: new Histogram({
      name: "specloop_inference_step_seconds",
      help: "Wall time of one scheduler step (draft + one target pass + verification).",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    }),
    stepRows: new Histogram({
      name: "specloop_inference_step_rows",
      help: "Rows (new tokens over all sequences) in one target pass.",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: r,
    }),
    queueDepth: new Gauge({
      name: "specloop_inference_queue_depth",
      help: "Requests waiting for admission.",
      collect() {
        this.set(state.queueDepth());
      },
      registers: r,
    }),
    running: new Gauge({
      name: "specloop_inference_running_requests",
      help: "Requests being decoded.",
      collect() {
        this.set(state.running());
      },
      registers: r,
    }),
    kvBlocksUsed: new Gauge({
      name: "specloop_inference_kv_blocks_used",
      help: "KV cache blocks in use.",
      collect() {
        this.set(state.kvBlocksUsed());
      },
      registers: r,
    }),
    kvBlocksTotal: new Gauge({
      name: "specloop_inference_kv_blocks_total",
      help: "KV cache blocks in all.",
      collect() {
        this.set(state.kvBlocksTotal());
      },
      registers: r,
    }),
    tracesPublished: new Counter({
      name: "specloop_inference_traces_published_total",
      help: "Request traces published to JetStream.",
      registers: r,
    }),
    traceDrops: new Counter({
      name: "specloop_inference_trace_drops_total",
      help: "Request traces dropped instead of blocking a request, by reason.",
      labelNames: ["reason"],
      registers: r,
    }),
    swaps: new Counter({
      name: "specloop_inference_speculator_swaps_total",
      help: "Speculator weight swaps, by role and outcome (swapped, refused, failed).",
      labelNames: ["role", "outcome"],
      registers: r,
    }),
    swapSeconds: new Histogram({
      name: "specloop_inference_speculator_swap_seconds",
      help: "From a new manifest to serving its weights (download, checks, upload, switch).",
      labelNames: ["role"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    }),
    requests: new Counter({
      name: "specloop_inference_requests_total",
      help: "Finished requests, by finish reason.",
      labelNames: ["finish_reason"],
      registers: r,
    }),
    refusedProposals: new Counter({
      name: "specloop_inference_refused_proposals_total",
      help: "Drafter proposals refused before the target pass (malformed); the sequence ran a plain step.",
      labelNames: ["drafter"],
      registers: r,
    }),
  };
}
