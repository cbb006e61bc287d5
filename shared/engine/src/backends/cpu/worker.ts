// The body of a cpu-backend worker thread, as source text run with `new Worker(source, { eval: true })`:
// a file would have to be .ts under the test runner (tsx's loader does not reach workers on Node 20) and
// .js when built, and this loop needs no imports. It instantiates the kernel module on the shared memory,
// then loops: wait for a new job (SEQ), run the kernel's job(), which claims and runs chunks of it until
// none are left (possibly none at all, when the other threads were quicker), and notify DONE if it ran
// the last one. No messages per job: the control block in shared memory is the only channel, so a job
// costs a few atomic operations and, for a sleeping worker, one wake-up. The same protocol's main-thread
// side is pool.ts.
import {
  CLAIM_BYTE_OFFSET,
  CONTROL_BYTE_OFFSET,
  CONTROL_SLOTS,
  DONE,
  DONE_BYTE_OFFSET,
  JOB_BYTE_OFFSET,
  SEQ,
  STOP,
} from "./control.js";

// Dynamic import: the eval'd source is a script or a module depending on the parent's --input-type.
export const WORKER_SOURCE = `
import("node:worker_threads").then(({ parentPort, workerData }) => {
const { module, memory, spin } = workerData;
const job = new WebAssembly.Instance(module, { env: { memory, abort() {} } }).exports.job;
const ctl = new Int32Array(memory.buffer, ${CONTROL_BYTE_OFFSET}, ${CONTROL_SLOTS});
let seen = Atomics.load(ctl, ${SEQ});
parentPort.postMessage("ready");
for (;;) {
  let now = seen;
  for (let i = 0; i < spin && now === seen; i++) now = Atomics.load(ctl, ${SEQ});
  while (now === seen) {
    Atomics.wait(ctl, ${SEQ}, seen);
    now = Atomics.load(ctl, ${SEQ});
  }
  seen = now;
  if (Atomics.load(ctl, ${STOP}) !== 0) break;
  if (job(${JOB_BYTE_OFFSET}, ${CLAIM_BYTE_OFFSET}, ${DONE_BYTE_OFFSET}) !== 0) Atomics.notify(ctl, ${DONE});
}
});
`;
