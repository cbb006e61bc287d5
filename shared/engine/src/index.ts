export {
  createWebGpuDevice,
  isSoftwareAdapter,
  RAISED_LIMITS,
  WANTED_FEATURES,
  type WebGpuAdapterSummary,
  type WebGpuDevice,
  type WebGpuFeature,
  type WebGpuOptions,
} from "./backends/webgpu/device.js";
export {
  WEBGPU_SETUP_HINT,
  WebGpuDeviceError,
  WebGpuSoftwareAdapterError,
  WebGpuUnavailableError,
} from "./errors.js";
