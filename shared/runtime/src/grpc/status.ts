// THE mapping from what a handler throws to the gRPC status the client sees. SpecloopError kinds map
// one to one; aborts (the call's signal) become CANCELLED or DEADLINE_EXCEEDED; anything else is
// INTERNAL with a generic message, and the real error goes to the log, never to the client.
import { Metadata, status as Status } from "@grpc/grpc-js";
import { ErrorKind, isSpecloopError } from "../errors.js";
import type { Logger } from "../logging.js";

export { Status };

/** One gRPC code per error kind. */
export const KIND_TO_STATUS: Readonly<Record<ErrorKind, Status>> = {
  [ErrorKind.InvalidArgument]: Status.INVALID_ARGUMENT,
  [ErrorKind.NotFound]: Status.NOT_FOUND,
  [ErrorKind.AlreadyExists]: Status.ALREADY_EXISTS,
  [ErrorKind.FailedPrecondition]: Status.FAILED_PRECONDITION,
  [ErrorKind.ResourceExhausted]: Status.RESOURCE_EXHAUSTED,
  [ErrorKind.Unavailable]: Status.UNAVAILABLE,
  [ErrorKind.DeadlineExceeded]: Status.DEADLINE_EXCEEDED,
  [ErrorKind.Cancelled]: Status.CANCELLED,
  [ErrorKind.Unimplemented]: Status.UNIMPLEMENTED,
  [ErrorKind.DataLoss]: Status.DATA_LOSS,
  [ErrorKind.Internal]: Status.INTERNAL,
  [ErrorKind.Unauthenticated]: Status.UNAUTHENTICATED,
  [ErrorKind.PermissionDenied]: Status.PERMISSION_DENIED,
};

/** What the client receives for a failed call. */
export interface GrpcStatus {
  code: Status;
  details: string;
  metadata: Metadata;
}

/** The details sent for errors the service did not describe. */
export const INTERNAL_DETAILS = "internal error";

/**
 * Maps a thrown value to a status. Never throws. Unknown errors (and INTERNAL SpecloopErrors, whose
 * message may describe internals) are logged with their stack at error level; the client sees only
 * INTERNAL_DETAILS.
 */
export function errorToStatus(err: unknown, logger?: Logger): GrpcStatus {
  const metadata = new Metadata();
  if (isSpecloopError(err)) {
    const code = KIND_TO_STATUS[err.kind] ?? Status.INTERNAL;
    if (code === Status.INTERNAL) {
      logger?.error({ err }, "handler failed with an internal error");
      return { code, details: INTERNAL_DETAILS, metadata };
    }
    return { code, details: err.message, metadata };
  }
  // AbortSignal.timeout() and AbortController.abort() without a reason reject with these DOMExceptions.
  if (err instanceof Error && err.name === "TimeoutError") {
    return { code: Status.DEADLINE_EXCEEDED, details: "deadline exceeded", metadata };
  }
  if (err instanceof Error && err.name === "AbortError") {
    return { code: Status.CANCELLED, details: "cancelled", metadata };
  }
  logger?.error({ err }, "handler failed with an unexpected error");
  return { code: Status.INTERNAL, details: INTERNAL_DETAILS, metadata };
}

/** The status name for logs and metric labels: "OK", "NOT_FOUND", ... */
export function statusName(code: Status): string {
  return Status[code] ?? String(code);
}
