// The project's typed errors. Every package defines its failures as subclasses of SpecloopError in
// its own errors.ts, choosing one ErrorKind; @specloop/runtime maps the kind to a gRPC status in one
// place (its grpc/status.ts). Anything that is not a SpecloopError becomes INTERNAL with a log line.

/** What went wrong, from the caller's point of view. Each kind maps to exactly one gRPC status code. */
export const ErrorKind = {
  InvalidArgument: "invalid_argument",
  NotFound: "not_found",
  AlreadyExists: "already_exists",
  FailedPrecondition: "failed_precondition",
  ResourceExhausted: "resource_exhausted",
  Unavailable: "unavailable",
  DeadlineExceeded: "deadline_exceeded",
  Cancelled: "cancelled",
  Unimplemented: "unimplemented",
  DataLoss: "data_loss",
  Internal: "internal",
  /** The call carried no credentials, or ones the server does not know. */
  Unauthenticated: "unauthenticated",
  /** The caller is known but may not do this. */
  PermissionDenied: "permission_denied",
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

export class SpecloopError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpecloopError";
    this.kind = kind;
  }
}

/** A configuration value is missing or invalid; `key` names it as the user wrote it. */
export class ConfigError extends SpecloopError {
  readonly key: string;
  constructor(key: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `config ${key}: ${message}`, options);
    this.name = "ConfigError";
    this.key = key;
  }
}

/** A request field is invalid; `field` names it in the request's own (snake_case) terms. */
export class InvalidArgumentError extends SpecloopError {
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `${field}: ${message}`, options);
    this.name = "InvalidArgumentError";
    this.field = field;
  }
}

export class NotFoundError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.NotFound, message, options);
    this.name = "NotFoundError";
  }
}

export class FailedPreconditionError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, message, options);
    this.name = "FailedPreconditionError";
  }
}

export class ResourceExhaustedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.ResourceExhausted, message, options);
    this.name = "ResourceExhaustedError";
  }
}

export class UnavailableError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, message, options);
    this.name = "UnavailableError";
  }
}

export class CancelledError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Cancelled, message, options);
    this.name = "CancelledError";
  }
}

export class DeadlineExceededError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.DeadlineExceeded, message, options);
    this.name = "DeadlineExceededError";
  }
}

export class UnimplementedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unimplemented, message, options);
    this.name = "UnimplementedError";
  }
}

export class InternalError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Internal, message, options);
    this.name = "InternalError";
  }
}

export class DataLossError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.DataLoss, message, options);
    this.name = "DataLossError";
  }
}

export class UnauthenticatedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unauthenticated, message, options);
    this.name = "UnauthenticatedError";
  }
}

export class PermissionDeniedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.PermissionDenied, message, options);
    this.name = "PermissionDeniedError";
  }
}

export function isSpecloopError(err: unknown): err is SpecloopError {
  return err instanceof SpecloopError;
}
