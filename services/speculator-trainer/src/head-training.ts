// The eagle head's training, behind one interface the loop drives: traces in, steps, evaluations, blobs and
// checkpoints out. A step is seconds of synchronous compute (the target's prefill per trace, then the head's
// forward and backward), so the service runs it on a worker thread (`HeadTrainingThread`): the service's own
// event loop keeps answering health checks, admin RPCs and the trace intake while the head learns. The
// thread runs the same `LocalHeadTraining` the tests use in process; the thread is only the transport.
import { Worker } from "node:worker_threads";
import {
  type BackendChoice,
  type EagleConfig,
  EagleHeadTrainer,
  type EagleTrainerOptions,
  type EvaluateResult,
  eagleConfigFor,
  loadModelDir,
  Model,
  selectBackend,
  type TrainerTarget,
  type TrainStepResult,
  trainerTarget,
} from "@specloop/engine";
import type { Trace } from "@specloop/proto";
import { type ExampleOptions, exampleFromTrace, type TrainingExample } from "./examples.js";

/** Where the head starts: a checkpoint (resume), a version's blob (continue from live), or new weights. */
export type HeadStart =
  | { from: "checkpoint"; bytes: Uint8Array }
  | { from: "blob"; bytes: Uint8Array }
  | { from: "new" };

export interface HeadTraining {
  /** Steps taken (restored with a checkpoint). */
  readonly stepCount: number;
  /** One AdamW step on these traces; each becomes an example through the trainer's own target. */
  step(traces: readonly Trace[]): Promise<TrainStepResult>;
  /** Offline metrics of the head on these traces; undefined when there are none. */
  evaluate(traces: readonly Trace[]): Promise<EvaluateResult | undefined>;
  /** The head as a version blob (safetensors, the config in its metadata). */
  exportBlob(): Promise<Uint8Array>;
  /** Weights, AdamW state, step and options, to resume from. */
  checkpoint(): Promise<Uint8Array>;
  /** New trainer options (an operator's config change): the head is rebuilt from its own checkpoint. */
  reconfigure(options: Partial<EagleTrainerOptions>): Promise<void>;
  close(): Promise<void>;
}

/** The training on this thread: the target model and the head trainer held here. */
export class LocalHeadTraining implements HeadTraining {
  private head: EagleHeadTrainer;

  constructor(
    private readonly target: Model,
    private readonly frozen: TrainerTarget,
    private readonly window: ExampleOptions,
    head: EagleConfig,
    start: HeadStart,
    options: Partial<EagleTrainerOptions>,
    /** Releases what this training owns (the backend it loaded the target into), at close(). */
    private readonly release: () => void = () => {},
  ) {
    this.head =
      start.from === "checkpoint"
        ? EagleHeadTrainer.restore(frozen, start.bytes, options)
        : start.from === "blob"
          ? EagleHeadTrainer.fromBlob(frozen, start.bytes, options)
          : EagleHeadTrainer.create(frozen, head, options);
  }

  get stepCount(): number {
    return this.head.stepCount;
  }

  async step(traces: readonly Trace[]): Promise<TrainStepResult> {
    return this.head.step(await this.examples(traces));
  }

  async evaluate(traces: readonly Trace[]): Promise<EvaluateResult | undefined> {
    if (traces.length === 0) return undefined;
    return this.head.evaluate(await this.examples(traces));
  }

  async exportBlob(): Promise<Uint8Array> {
    return this.head.exportBlob();
  }

  async checkpoint(): Promise<Uint8Array> {
    return this.head.checkpoint();
  }

  async reconfigure(options: Partial<EagleTrainerOptions>): Promise<void> {
    this.head = EagleHeadTrainer.restore(this.frozen, this.head.checkpoint(), options);
  }

  async close(): Promise<void> {
    this.release();
  }

  /** Traces to examples (one target prefill each). */
  private async examples(traces: readonly Trace[]): Promise<TrainingExample[]> {
    const out: TrainingExample[] = [];
    for (const t of traces) {
      out.push(await exampleFromTrace(this.target, t, this.window));
    }
    return out;
  }
}

/** What the service's training thread loads: the target from disk and the head's shape and start. */
export interface HeadTrainingSetup {
  modelDir: string;
  backend: BackendChoice;
  /** Threads of the cpu backend (0: every core). */
  cpuThreads: number;
  /** Target layers the head reads (empty: the last layer, EAGLE-1). */
  featureLayers: readonly number[];
  exampleMaxTokens: number;
  start: HeadStart;
  options: Partial<EagleTrainerOptions>;
}

/** Loads the target from disk and opens the training on this thread (the worker's body calls it). */
export async function openLocalHeadTraining(setup: HeadTrainingSetup): Promise<LocalHeadTraining> {
  const selected = await selectBackend(setup.backend, {
    cpu: setup.cpuThreads > 0 ? { threads: setup.cpuThreads } : {},
  });
  const loaded = await loadModelDir(setup.modelDir);
  const head = eagleConfigFor(
    loaded.config,
    setup.featureLayers.length > 0 ? { featureLayers: [...setup.featureLayers] } : {},
  );
  return new LocalHeadTraining(
    Model.load(selected.backend, loaded),
    trainerTarget(loaded),
    { featureLayers: head.featureLayers, maxTokens: setup.exampleMaxTokens },
    head,
    setup.start,
    setup.options,
    () => selected.backend.destroy(),
  );
}

/** A request to the training thread and its answer (head-training-thread.ts). */
export type HeadTrainingRequest =
  | { id: number; op: "step"; traces: readonly Trace[] }
  | { id: number; op: "evaluate"; traces: readonly Trace[] }
  | { id: number; op: "exportBlob" }
  | { id: number; op: "checkpoint" }
  | { id: number; op: "reconfigure"; options: Partial<EagleTrainerOptions> };

export type HeadTrainingReply =
  | { id: number; ok: true; value: unknown; stepCount: number }
  | { id: number; ok: false; message: string; stepCount: number };

/** The training on a worker thread; each call is a message, answered in order. */
export class HeadTrainingThread implements HeadTraining {
  private nextId = 1;
  private steps: number;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    stepCount: number,
  ) {
    this.steps = stepCount;
    worker.on("message", (reply: HeadTrainingReply) => {
      const waiting = this.pending.get(reply.id);
      if (waiting === undefined) return;
      this.pending.delete(reply.id);
      this.steps = reply.stepCount;
      if (reply.ok) waiting.resolve(reply.value);
      else waiting.reject(new Error(reply.message));
    });
    const fail = (err: Error) => {
      this.failure = err;
      for (const w of this.pending.values()) w.reject(err);
      this.pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`the training thread exited (code ${code})`)));
  }

  /** Starts the thread; resolves once it has loaded the target and the head. */
  static async open(setup: HeadTrainingSetup): Promise<HeadTrainingThread> {
    const worker = startThread(setup);
    const stepCount = await new Promise<number>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      worker.once("error", onError);
      worker.once("exit", (code) =>
        reject(new Error(`the training thread exited (code ${code}) while loading`)),
      );
      worker.once("message", (m: { ready: true; stepCount: number } | { ready: false; message: string }) => {
        worker.off("error", onError);
        worker.removeAllListeners("exit");
        if (m.ready) resolve(m.stepCount);
        else reject(new Error(m.message));
      });
    });
    return new HeadTrainingThread(worker, stepCount);
  }

  get stepCount(): number {
    return this.steps;
  }

  step(traces: readonly Trace[]): Promise<TrainStepResult> {
    return this.call({ op: "step", traces }) as Promise<TrainStepResult>;
  }

  evaluate(traces: readonly Trace[]): Promise<EvaluateResult | undefined> {
    return this.call({ op: "evaluate", traces }) as Promise<EvaluateResult | undefined>;
  }

  exportBlob(): Promise<Uint8Array> {
    return this.call({ op: "exportBlob" }) as Promise<Uint8Array>;
  }

  checkpoint(): Promise<Uint8Array> {
    return this.call({ op: "checkpoint" }) as Promise<Uint8Array>;
  }

  async reconfigure(options: Partial<EagleTrainerOptions>): Promise<void> {
    await this.call({ op: "reconfigure", options });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners("exit");
    await this.worker.terminate();
  }

  private call(request: DistributiveOmit<HeadTrainingRequest, "id">): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...request, id });
    });
  }
}

/**
 * Built, the thread is the .js beside this module. Under the test runner this module is the .ts source, run
 * through tsx, whose hooks a worker thread does not inherit on Node 20: the thread registers them first.
 */
function startThread(setup: HeadTrainingSetup): Worker {
  if (!import.meta.url.endsWith(".ts")) {
    return new Worker(new URL("./head-training-thread.js", import.meta.url), { workerData: setup });
  }
  const tsx = import.meta.resolve("tsx/esm/api");
  const body = new URL("./head-training-thread.ts", import.meta.url).href;
  const source = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(body)}); });`;
  return new Worker(source, { eval: true, workerData: setup });
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
