// `--backend auto|reference|cpu|webgpu`: which Backend a command runs on. `auto` takes a hardware WebGPU
// adapter when there is one (a software adapter such as lavapipe is slower than the CPU path) and the
// WebAssembly SIMD `cpu` backend (all cores) otherwise. `reference` is the plain TypeScript yardstick,
// selectable by name only. `webgpu` asked for by name accepts a software adapter (tests, CI); only `auto`
// refuses one.
import type { Backend, BackendKind } from "./backend.js";
import { type CpuBackendOptions, createCpuBackend } from "./backends/cpu/backend.js";
import { ReferenceBackend } from "./backends/reference/backend.js";
import { createWebGpuBackend } from "./backends/webgpu/backend.js";
import { createWebGpuDevice, type WebGpuDevice } from "./backends/webgpu/device.js";

export const BACKEND_CHOICES = ["auto", "reference", "cpu", "webgpu"] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface SelectedBackend {
  backend: Backend;
  requested: BackendChoice;
  used: BackendKind;
  /** Why `used` is not what was asked for, or what `auto` found. */
  notes: string[];
}

/** How backends are built; each field falls back to the engine's own when absent. */
export interface BackendFactories {
  /** Builds the webgpu backend from a device (default createWebGpuBackend). */
  webgpu?: (device: WebGpuDevice) => Backend;
  /** Options of the `cpu` backend (threads: default os.availableParallelism()). */
  cpu?: CpuBackendOptions;
}

export function isBackendChoice(s: string): s is BackendChoice {
  return (BACKEND_CHOICES as readonly string[]).includes(s);
}

async function cpuBackend(
  requested: BackendChoice,
  notes: string[],
  options: CpuBackendOptions | undefined,
): Promise<SelectedBackend> {
  const backend = await createCpuBackend(options);
  notes.push(
    `cpu: WebAssembly SIMD${backend.fma ? " with relaxed-SIMD FMA" : ""} on ${backend.threads} thread${backend.threads === 1 ? "" : "s"}`,
  );
  return { backend, requested, used: "cpu", notes };
}

export async function selectBackend(
  requested: BackendChoice,
  factories: BackendFactories = {},
): Promise<SelectedBackend> {
  const notes: string[] = [];
  const makeWebGpu = factories.webgpu ?? createWebGpuBackend;
  switch (requested) {
    case "reference":
      return { backend: new ReferenceBackend(), requested, used: "reference", notes };
    case "cpu":
      return cpuBackend(requested, notes, factories.cpu);
    case "webgpu": {
      const device = await createWebGpuDevice();
      return { backend: makeWebGpu(device), requested, used: "webgpu", notes };
    }
    case "auto": {
      let device: WebGpuDevice;
      try {
        device = await createWebGpuDevice({ allowSoftware: false });
      } catch (err) {
        notes.push(`no hardware WebGPU adapter: ${err instanceof Error ? err.message : String(err)}`);
        return cpuBackend(requested, notes, factories.cpu);
      }
      notes.push(`WebGPU adapter ${device.adapter.description || device.adapter.device}`);
      return { backend: makeWebGpu(device), requested, used: "webgpu", notes };
    }
  }
}
