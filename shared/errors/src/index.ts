// @specloop/errors: the project's typed errors, a leaf package (no dependencies) so that pure libraries such
// as the engine can throw them without loading the service kit. @specloop/runtime re-exports all of it and
// maps each kind to a gRPC status (its grpc/status.ts).
export {
  CancelledError,
  ConfigError,
  DataLossError,
  DeadlineExceededError,
  ErrorKind,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  isSpecloopError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  SpecloopError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
} from "./errors.js";
