// The trainer's Prometheus metrics (beside the gRPC server metrics the runtime kit records). Rates (trace
// tokens learned per second) come from the counters with rate(); gauges read the loop at scrape time.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface TrainerGaugeSources {
  bufferTraces(): number;
  bufferCapacity(): number;
  bufferAgeSeconds(): number;
  trainingSteps(): number;
}

export interface TrainerMetrics {
  tokensLearned: Counter;
  loss: Gauge;
  simulatedAcceptedPerPass: Gauge;
  stepSeconds: Histogram;
  versions: Counter<"event">;
  gateDecisions: Counter<"decision">;
}

export function trainerMetrics(registry: Registry, state: TrainerGaugeSources): TrainerMetrics {
  const r = [registry];
  new Gauge({
    name: "specloop_trainer_buffer_traces",
    help: "Traces in the replay buffer.",
    registers: r,
    collect() {
      this.set(state.bufferTraces());
    },
  });
  new Gauge({
    name: "specloop_trainer_buffer_capacity",
    help: "Replay buffer capacity, traces.",
    registers: r,
    collect() {
      this.set(state.bufferCapacity());
    },
  });
  new Gauge({
    name: "specloop_trainer_buffer_age_seconds",
    help: "Age of the oldest trace in the replay buffer.",
    registers: r,
    collect() {
      this.set(state.bufferAgeSeconds());
    },
  });
  new Gauge({
    name: "specloop_trainer_steps",
    help: "Optimizer steps taken (the head's step count).",
    registers: r,
    collect() {
      this.set(state.trainingSteps());
    },
  });
  return {
    tokensLearned: new Counter({
      name: "specloop_trainer_tokens_learned_total",
      help: "Trace positions trained on; rate() is trace tokens learned per second.",
      registers: r,
    }),
    loss: new Gauge({
      name: "specloop_trainer_loss",
      help: "The last training step's objective.",
      registers: r,
    }),
    simulatedAcceptedPerPass: new Gauge({
      name: "specloop_trainer_simulated_accepted_per_pass",
      help: "Offline simulated accepted tokens per target pass of the last published version.",
      registers: r,
    }),
    stepSeconds: new Histogram({
      name: "specloop_trainer_step_seconds",
      help: "One training step: examples from traces (target prefills) plus the update.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: r,
    }),
    versions: new Counter({
      name: "specloop_trainer_versions_total",
      help: "Version events: published, canaried, promoted, rejected, rolled_back.",
      labelNames: ["event"],
      registers: r,
    }),
    gateDecisions: new Counter({
      name: "specloop_trainer_gate_decisions_total",
      help: "Decisions of the promotion gate: promote, reject, rollback.",
      labelNames: ["decision"],
      registers: r,
    }),
  };
}
