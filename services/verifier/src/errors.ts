// The verifier's failures. Each picks the ErrorKind (and so the gRPC status) a caller should see;
// the runtime kit does the mapping.
import { ErrorKind, SpecloopError } from "@specloop/runtime";

/**
 * A judge could not give a verdict (the inference node failed, a sandbox could not start...). UNAVAILABLE,
 * unless the node refused the judge's request for good (InferenceRejectedError): then the node's kind, since
 * retrying the same candidates would fail the same way.
 */
export class JudgeFailedError extends SpecloopError {
  readonly judge: string;
  constructor(judge: string, message: string, options?: ErrorOptions) {
    const cause = options?.cause;
    super(
      cause instanceof InferenceRejectedError ? cause.kind : ErrorKind.Unavailable,
      `judge ${judge}: ${message}`,
      options,
    );
    this.name = "JudgeFailedError";
    this.judge = judge;
  }
}

/** A judge answered something that is not a probability: a bug in the judge, not the caller's fault. */
export class InvalidVerdictError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Internal, message, options);
    this.name = "InvalidVerdictError";
  }
}

/** The inference node answered something the verifier cannot use. */
export class InferenceFailedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, message, options);
    this.name = "InferenceFailedError";
  }
}

/**
 * The inference node refused a request with a status retrying cannot fix as is: INVALID_ARGUMENT (e.g. a
 * max_tokens over its limit, a judge prompt longer than its context), NOT_FOUND, FAILED_PRECONDITION,
 * OUT_OF_RANGE; or RESOURCE_EXHAUSTED (its queue is full: retry later). The caller sees the node's kind and
 * message rather than UNAVAILABLE, which would invite retrying a request that cannot succeed.
 */
export class InferenceRejectedError extends SpecloopError {
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(kind, message, options);
    this.name = "InferenceRejectedError";
  }
}

/**
 * This machine cannot run the tests judge's sandbox (bubblewrap missing, user namespaces refused, an
 * interpreter the sandbox's user cannot run): FAILED_PRECONDITION, since retrying changes nothing.
 */
export class SandboxUnavailableError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, message, options);
    this.name = "SandboxUnavailableError";
  }
}

/** One sandbox did not start its candidate: a failure of the judge, never a verdict on the candidate. */
export class SandboxFailedError extends SpecloopError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, message, options);
    this.name = "SandboxFailedError";
  }
}
