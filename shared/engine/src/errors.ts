// The engine's failures, each a SpecloopError of one ErrorKind from the leaf package @specloop/errors. The
// engine does not depend on @specloop/runtime: its index loads gRPC, pino and protobufjs (34 MiB resident),
// which a process that only runs the engine does not need; the runtime maps these kinds to gRPC statuses.
import { ErrorKind, SpecloopError } from "@specloop/errors";

/** Where a machine without a usable WebGPU adapter should look first. */
export const WEBGPU_SETUP_HINT =
  "run scripts/setup.sh as root: it installs the Vulkan loader and Mesa >= 25 lavapipe from bookworm-backports";

/**
 * No WebGPU adapter could be had: Dawn's Node bindings did not load, or no backend offered an adapter.
 * `attempts` names each thing that was tried and what it gave.
 */
export class WebGpuUnavailableError extends SpecloopError {
  readonly attempts: readonly string[];
  constructor(message: string, attempts: readonly string[], options?: ErrorOptions) {
    super(
      ErrorKind.FailedPrecondition,
      `${message}; tried: ${attempts.join("; ")}. Hint: ${WEBGPU_SETUP_HINT}`,
      options,
    );
    this.name = "WebGpuUnavailableError";
    this.attempts = attempts;
  }
}

/** Only a software (CPU) adapter was found where a hardware GPU was required. */
export class WebGpuSoftwareAdapterError extends SpecloopError {
  readonly adapter: string;
  constructor(adapter: string, options?: ErrorOptions) {
    super(
      ErrorKind.FailedPrecondition,
      `the only WebGPU adapter is a software one (${adapter}); it is refused here: use the cpu backend, ` +
        "or allow software adapters explicitly",
      options,
    );
    this.name = "WebGpuSoftwareAdapterError";
    this.adapter = adapter;
  }
}

/** The adapter was found but refused to create a device with the requested features and limits. */
export class WebGpuDeviceError extends SpecloopError {
  readonly adapter: string;
  constructor(adapter: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, `WebGPU device on ${adapter}: ${message}`, options);
    this.name = "WebGpuDeviceError";
    this.adapter = adapter;
  }
}

/** config.json asks for an architecture or option the engine does not implement; names the field. */
export class UnsupportedModelError extends SpecloopError {
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `unsupported model: ${field}: ${message}`, options);
    this.name = "UnsupportedModelError";
    this.field = field;
  }
}

/** A model file is missing, truncated or inconsistent with the others; names the file. */
export class ModelFileError extends SpecloopError {
  readonly file: string;
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, `${file}: ${message}`, options);
    this.name = "ModelFileError";
    this.file = file;
  }
}

/** The KV cache has no room for what was asked; the scheduler preempts or queues. */
export class KvCacheFullError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.ResourceExhausted, message, options);
    this.name = "KvCacheFullError";
  }
}

/** Dawn reported a validation or out-of-memory error for work the webgpu backend recorded: a kernel bug. */
export class WebGpuKernelError extends SpecloopError {
  readonly adapter: string;
  constructor(adapter: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.Internal, `WebGPU on ${adapter}: ${message}`, options);
    this.name = "WebGpuKernelError";
    this.adapter = adapter;
  }
}

/**
 * A speculator blob (safetensors + manifest) does not fit the target or is malformed; `what` names the
 * metadata key, tensor, or check that failed (a node refuses to swap it in).
 */
export class SpeculatorBlobError extends SpecloopError {
  readonly what: string;
  constructor(what: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `speculator blob: ${what}: ${message}`, options);
    this.name = "SpeculatorBlobError";
    this.what = what;
  }
}
