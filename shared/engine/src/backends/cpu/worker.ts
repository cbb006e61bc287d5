// The body of a cpu-backend worker thread, as source text run with `new Worker(source, { eval: true })`:
// a file would have to be .ts under the test runner (tsx's loader does not reach workers on Node 20) and
// .js when built, and this loop needs no imports. It instantiates the kernel module on the shared memory,
// then loops: wait for a new job (SEQ), compute its share of the output columns, decrement PENDING. No
// messages per job: the control block in shared memory is the only channel, so a job costs two atomic
// writes and, for a sleeping worker, one wake-up. The same protocol's main-thread side is pool.ts.
import { ARGS, CONTROL_BYTE_OFFSET, CONTROL_SLOTS, PENDING, SEQ, STOP } from "./control.js";

// Dynamic import: the eval'd source is a script or a module depending on the parent's --input-type.
export const WORKER_SOURCE = `
import("node:worker_threads").then(({ parentPort, workerData }) => {
const { module, memory, index, spin } = workerData;
const matmul = new WebAssembly.Instance(module, { env: { memory, abort() {} } }).exports.matmul;
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
  const a = (i) => ctl[${ARGS} + i];
  const threads = a(8);
  if (index < threads) {
    // share() of control.ts: chunks of whole 4-row tiles.
    const m = a(6);
    const per = Math.ceil(m / threads / 4) * 4;
    const j0 = Math.min(m, index * per);
    const j1 = Math.min(m, (index + 1) * per);
    if (j1 > j0) matmul(a(0), a(1), a(2), a(3), a(4), a(5), m, j0, j1, a(7));
    if (Atomics.sub(ctl, ${PENDING}, 1) === 1) Atomics.notify(ctl, ${PENDING});
  }
}
});
`;
