// The one place where the engine gets a WebGPU device: loads Dawn's Node bindings (npm `webgpu`), picks an
// adapter, and creates a device with the optional features and raised limits the kernels rely on. Everything
// else in the webgpu backend receives a WebGpuDevice and never talks to Dawn's entry points itself.
import { WebGpuDeviceError, WebGpuSoftwareAdapterError, WebGpuUnavailableError } from "../../errors.js";

/** Optional features requested whenever the adapter has them; kernels check `features` before using one. */
export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;
export type WebGpuFeature = (typeof WANTED_FEATURES)[number];

/**
 * Limits raised from WebGPU's defaults to what the adapter supports: weights and KV caches are large storage
 * buffers, and matmul tiles want the most workgroup memory and invocations the hardware offers.
 */
export const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
] as const;

export interface WebGpuAdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** A CPU implementation (lavapipe/llvmpipe, SwiftShader, WARP): fine for tests, refused for serving. */
  isSoftware: boolean;
}

export interface WebGpuOptions {
  /** Passed to requestAdapter; default "high-performance". */
  powerPreference?: GPUPowerPreference;
  /** Accept a software adapter (default true). The `auto` backend passes false so it falls back to cpu. */
  allowSoftware?: boolean;
  /** Options for Dawn's `create()`, e.g. "backend=vulkan", "adapter=NAME", "enable-dawn-features=...". */
  dawnOptions?: readonly string[];
  /** Label of the device, shown in Dawn's validation messages. */
  label?: string;
}

export interface WebGpuDevice {
  readonly device: GPUDevice;
  readonly adapter: WebGpuAdapterSummary;
  /** The optional features that were enabled on the device. */
  readonly features: ReadonlySet<WebGpuFeature>;
  readonly limits: GPUSupportedLimits;
  /**
   * The adapter's subgroup size when the `subgroups` feature is enabled and the size is fixed (the adapter's
   * minimum and maximum agree: 32 on NVIDIA, 8 on lavapipe), else 0. Kernels built for one size use it.
   */
  readonly subgroupSize: number;
  /** Resolves when the device is lost; reason "destroyed" after destroy(). */
  readonly lost: Promise<GPUDeviceLostInfo>;
  /** Destroys the device and drops Dawn's instance so the process can exit. Safe to call twice. */
  destroy(): void;
}

type Dawn = typeof import("webgpu");

const SOFTWARE_NAMES = /lavapipe|llvmpipe|softpipe|swiftshader|\bwarp\b|basic render driver|software/i;

/** Whether adapter info describes a CPU implementation rather than a GPU. */
export function isSoftwareAdapter(info: {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter?: boolean;
}): boolean {
  if (info.isFallbackAdapter === true) return true;
  return [info.vendor, info.architecture, info.device, info.description].some((s) => SOFTWARE_NAMES.test(s));
}

function summarize(adapter: GPUAdapter): WebGpuAdapterSummary {
  const info = adapter.info;
  const summary = {
    vendor: info.vendor ?? "",
    architecture: info.architecture ?? "",
    device: info.device ?? "",
    description: info.description ?? "",
    isFallbackAdapter: info.isFallbackAdapter === true,
  };
  return { ...summary, isSoftware: isSoftwareAdapter(summary) };
}

/** A short name of the adapter for messages: its description, else vendor and device. */
function adapterName(a: WebGpuAdapterSummary): string {
  return a.description || [a.vendor, a.architecture, a.device].filter(Boolean).join(" ") || "unnamed adapter";
}

let globalsInstalled = false;

/**
 * Dawn's constructors and flag namespaces (GPUBufferUsage, GPUMapMode, GPUShaderStage, ...) become globals, as
 * in a browser, so that the backend's code reads like WebGPU code anywhere. Existing globals are left alone.
 */
function installGlobals(dawn: Dawn): void {
  if (globalsInstalled) return;
  for (const [name, value] of Object.entries(dawn.globals as Record<string, unknown>)) {
    if (!(name in globalThis)) {
      Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
    }
  }
  globalsInstalled = true;
}

async function loadDawn(attempts: string[]): Promise<Dawn> {
  try {
    return await import("webgpu");
  } catch (err) {
    attempts.push(`loading Dawn's Node bindings (npm webgpu) failed: ${String(err)}`);
    throw new WebGpuUnavailableError("WebGPU is not available", attempts, { cause: err });
  }
}

async function requestAdapter(
  gpu: GPU,
  options: GPURequestAdapterOptions,
  attempts: string[],
): Promise<GPUAdapter | null> {
  const what = `requestAdapter(${JSON.stringify(options)})`;
  try {
    const adapter = await gpu.requestAdapter(options);
    attempts.push(`${what} -> ${adapter ? adapterName(summarize(adapter)) : "null"}`);
    return adapter;
  } catch (err) {
    attempts.push(`${what} threw: ${String(err)}`);
    return null;
  }
}

/**
 * Creates a WebGPU device on the best adapter Dawn offers: first by power preference, then (when software
 * adapters are allowed) by asking for the fallback adapter. Throws WebGpuUnavailableError when there is none,
 * WebGpuSoftwareAdapterError when only a software adapter exists and it is not allowed, and WebGpuDeviceError
 * when the adapter refuses the device.
 */
export async function createWebGpuDevice(options: WebGpuOptions = {}): Promise<WebGpuDevice> {
  const allowSoftware = options.allowSoftware ?? true;
  const powerPreference = options.powerPreference ?? "high-performance";
  const dawnOptions = [...(options.dawnOptions ?? [])];
  const attempts: string[] = [];

  const dawn = await loadDawn(attempts);
  let gpu: GPU;
  try {
    gpu = dawn.create(dawnOptions);
  } catch (err) {
    attempts.push(`Dawn create(${JSON.stringify(dawnOptions)}) threw: ${String(err)}`);
    throw new WebGpuUnavailableError("WebGPU is not available", attempts, { cause: err });
  }
  installGlobals(dawn);

  let adapter = await requestAdapter(gpu, { powerPreference }, attempts);
  if (!adapter && allowSoftware) {
    adapter = await requestAdapter(gpu, { powerPreference, forceFallbackAdapter: true }, attempts);
  }
  if (!adapter) {
    // The Vulkan loader's driver overrides are the usual reason a configured machine finds no adapter.
    const env = ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"].filter((k) => process.env[k]);
    const context = [
      dawnOptions.length > 0 ? `Dawn options ${JSON.stringify(dawnOptions)}` : "",
      ...env.map((k) => `${k}=${process.env[k]}`),
    ].filter(Boolean);
    const suffix = context.length > 0 ? ` (${context.join(", ")})` : "";
    throw new WebGpuUnavailableError(`no WebGPU adapter found${suffix}`, attempts);
  }
  const summary = summarize(adapter);
  if (summary.isSoftware && !allowSoftware) {
    throw new WebGpuSoftwareAdapterError(adapterName(summary));
  }

  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      label: options.label ?? "specloop",
      requiredFeatures: features,
      requiredLimits,
    });
  } catch (err) {
    throw new WebGpuDeviceError(
      adapterName(summary),
      `requestDevice(features ${JSON.stringify(features)}) failed: ${String(err)}`,
      { cause: err },
    );
  }

  // Dawn keeps the process alive while its instance is referenced (dawn.node's README, "Lifetime"): hold it
  // as long as the device lives, and drop it on destroy.
  let instance: GPU | null = gpu;
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const sgMin = info.subgroupMinSize ?? 0;
  const subgroupSize =
    features.includes("subgroups") && sgMin > 0 && sgMin === info.subgroupMaxSize ? sgMin : 0;
  return {
    device,
    adapter: summary,
    features: new Set(features),
    limits: device.limits,
    subgroupSize,
    lost: device.lost,
    destroy() {
      if (instance === null) return;
      device.destroy();
      // Dawn's Node bindings poll the instance from a scheduled callback until the device-lost event has
      // been delivered; an instance garbage-collected before then is used after free (a crash or a futex
      // abort at a later GC). Drop it only once `lost` has resolved and that callback has had a turn.
      void device.lost.then(() => {
        setImmediate(() => {
          instance = null;
        });
      });
    },
  };
}
