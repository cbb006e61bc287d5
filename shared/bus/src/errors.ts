// The bus's failures, each a SpecloopError of one kind (mapped to a gRPC status by the runtime kit).
import { ErrorKind, SpecloopError } from "@specloop/runtime";

/** The server cannot be reached (at connect) or a JetStream call failed for want of it. */
export class BusUnavailableError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, message, options);
    this.name = "BusUnavailableError";
  }
}

/** An id cannot become a subject or key token (empty, or not a token when decoding). */
export class InvalidBusNameError extends SpecloopError {
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `${field}: ${message}`, options);
    this.name = "InvalidBusNameError";
    this.field = field;
  }
}

/** A message to publish is missing a required field or holds an invalid one. */
export class InvalidMessageError extends SpecloopError {
  readonly field: string;
  constructor(field: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `${field}: ${message}`, options);
    this.name = "InvalidMessageError";
    this.field = field;
  }
}

/** A message (or one indivisible part of a trace) is over the configured size limit. */
export class MessageTooLargeError extends SpecloopError {
  readonly size: number;
  readonly limit: number;
  constructor(what: string, size: number, limit: number, options?: ErrorOptions) {
    super(ErrorKind.ResourceExhausted, `${what} is ${size} bytes, over the limit of ${limit} bytes`, options);
    this.name = "MessageTooLargeError";
    this.size = size;
    this.limit = limit;
  }
}

/** A stored blob does not match the digest or size its manifest announces, or a stored value is corrupt. */
export class DigestMismatchError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.DataLoss, message, options);
    this.name = "DigestMismatchError";
  }
}

/** A blob, manifest or bucket the caller named does not exist. */
export class BusNotFoundError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.NotFound, message, options);
    this.name = "BusNotFoundError";
  }
}

/** Existing bus state conflicts with what was asked (e.g. a stream's storage type cannot change). */
export class BusConflictError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, message, options);
    this.name = "BusConflictError";
  }
}

/** A credentials or key file is missing, unreadable or does not hold what it should. */
export class BusCredentialsError extends SpecloopError {
  readonly file: string;
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, `${file}: ${message}`, options);
    this.name = "BusCredentialsError";
    this.file = file;
  }
}

/** The server refused an operation this connection's credential is not allowed (a permissions violation). */
export class BusPermissionError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, message, options);
    this.name = "BusPermissionError";
  }
}

/** Why a registry entry was refused. */
export type ManifestRefusalReason = "malformed" | "unsigned" | "unknown_key" | "bad_signature" | "mismatch";

/** A speculator manifest in the registry that a node will not use (and why): counted, logged, skipped. */
export class ManifestRefusedError extends SpecloopError {
  readonly reason: ManifestRefusalReason;
  constructor(reason: ManifestRefusalReason, message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, message, options);
    this.name = "ManifestRefusedError";
    this.reason = reason;
  }
}

/** Why a trace was refused at intake (trace-validate.ts). */
export type TraceRejectionReason = "vocabulary" | "shape" | "size";

/** A trace from the bus that breaks the consumer's limits; terminated and counted, never used. */
export class TraceRejectedError extends SpecloopError {
  readonly reason: TraceRejectionReason;
  readonly field: string;
  constructor(reason: TraceRejectionReason, field: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.InvalidArgument, `trace ${field}: ${message}`, options);
    this.name = "TraceRejectedError";
    this.reason = reason;
    this.field = field;
  }
}
