// The body of the trainer's training thread (HeadTrainingThread in head-training.ts): it loads the target
// and the head once, then answers each request in order. Errors are answered, not thrown, so one bad batch
// fails its step and the thread lives on.
import { parentPort, workerData } from "node:worker_threads";
import {
  type HeadTrainingReply,
  type HeadTrainingRequest,
  type HeadTrainingSetup,
  type LocalHeadTraining,
  openLocalHeadTraining,
} from "./head-training.js";

const port = parentPort;
if (port === null) throw new Error("head-training-thread: run it as a worker thread");

let training: LocalHeadTraining;
try {
  training = await openLocalHeadTraining(workerData as HeadTrainingSetup);
  port.postMessage({ ready: true, stepCount: training.stepCount });
} catch (err) {
  port.postMessage({ ready: false, message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

async function answer(request: HeadTrainingRequest): Promise<unknown> {
  switch (request.op) {
    case "step":
      return training.step(request.traces);
    case "evaluate":
      return training.evaluate(request.traces);
    case "exportBlob":
      return training.exportBlob();
    case "checkpoint":
      return training.checkpoint();
    case "reconfigure":
      return training.reconfigure(request.options);
  }
}

// One request at a time, in arrival order: a step and the export after it see the same head.
let queue: Promise<void> = Promise.resolve();
port.on("message", (request: HeadTrainingRequest) => {
  queue = queue.then(async () => {
    let reply: HeadTrainingReply;
    try {
      const value = await answer(request);
      reply = { id: request.id, ok: true, value, stepCount: training.stepCount };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      reply = { id: request.id, ok: false, message, stepCount: training.stepCount };
    }
    // Copied, not transferred: a blob of a few MiB, and its buffer may be shared with the head's arrays.
    port.postMessage(reply);
  });
});
