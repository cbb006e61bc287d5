// The publishing side of bench/hot-swap-load.ts, on its own thread (as the trainer is its own process): a
// new signed head in the live slot every `everyMs` until told to stop; posts each version id it published.
import { parentPort, workerData } from "node:worker_threads";
import { connectBus, ManifestSigner, SpeculatorRegistry } from "@specloop/bus";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { createLogger } from "@specloop/runtime";

interface PublisherSetup {
  bus: Parameters<typeof connectBus>[0];
  keyFile: string;
  heads: Uint8Array[];
  everyMs: number;
  first: number;
  /** The model whose live slot gets the heads (another than the node's: publishing load, no swap). */
  modelId: string;
}

const setup = workerData as PublisherSetup;
const port = parentPort;
if (port === null) throw new Error("hot-swap-publisher: run it as a worker thread");
const bus = await connectBus(setup.bus, createLogger("hot-swap-publisher", "warn"));
const registry = await SpeculatorRegistry.open(bus.js, { signer: ManifestSigner.fromFile(setup.keyFile) });
let n = setup.first;
const publish = async () => {
  const versionId = `bench-v${n}`;
  const t0 = performance.now();
  await registry.publish({
    manifest: SpeculatorManifest.fromPartial({
      modelId: setup.modelId,
      versionId,
      role: SpeculatorRole.SPECULATOR_ROLE_LIVE,
      architecture: "eagle-v1",
    }),
    blob: setup.heads[n % setup.heads.length] as Uint8Array,
  });
  n++;
  port.postMessage({ versionId, ms: performance.now() - t0 });
};
const timer = setInterval(() => void publish(), setup.everyMs);
port.on("message", async () => {
  clearInterval(timer);
  await bus.close();
  port.postMessage({ stopped: n });
});
