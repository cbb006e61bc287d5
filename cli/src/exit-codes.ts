// What the `specloop` process's exit status means (README "Admin CLI" lists them), and the one function
// that turns whatever a command failed with into a line for stderr and one of these codes.
import { type ServiceError, status } from "@grpc/grpc-js";
import { BusCredentialsError, BusPermissionError } from "@specloop/bus";
import { ErrorKind, isSpecloopError } from "@specloop/runtime";
import { ErrorCode, NatsError } from "nats";

export const EXIT = {
  /** Done; for `status` and `health`, also: everything is healthy. */
  ok: 0,
  /** The command ran and the answer is no: the server refused the request (its reason printed), a node
   * is stale or none is live (`status`), the service is not serving (`health`), or an unexpected error. */
  failed: 1,
  /** The command line is wrong: unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** The server or NATS cannot be reached, or did not answer before the deadline. */
  unavailable: 3,
  /** No credentials, unknown ones, or ones without the right (admin token, NATS permissions). */
  auth: 4,
  /** What the command names does not exist (a version id). */
  notFound: 5,
  /** The change is not possible in the present state (promote a rejected version, nothing to roll back). */
  conflict: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure the CLI itself detects before asking anyone (a bad KEY=VALUE, a token file it cannot read). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.usage,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "CliError";
  }
}

const BY_GRPC_STATUS: Partial<Record<status, ExitCode>> = {
  [status.UNAVAILABLE]: EXIT.unavailable,
  [status.DEADLINE_EXCEEDED]: EXIT.unavailable,
  [status.UNAUTHENTICATED]: EXIT.auth,
  [status.PERMISSION_DENIED]: EXIT.auth,
  [status.NOT_FOUND]: EXIT.notFound,
  [status.FAILED_PRECONDITION]: EXIT.conflict,
  [status.ALREADY_EXISTS]: EXIT.conflict,
  [status.ABORTED]: EXIT.conflict,
};

const BY_KIND: Partial<Record<ErrorKind, ExitCode>> = {
  [ErrorKind.Unavailable]: EXIT.unavailable,
  [ErrorKind.DeadlineExceeded]: EXIT.unavailable,
  [ErrorKind.Unauthenticated]: EXIT.auth,
  [ErrorKind.PermissionDenied]: EXIT.auth,
  [ErrorKind.NotFound]: EXIT.notFound,
  [ErrorKind.FailedPrecondition]: EXIT.conflict,
  [ErrorKind.AlreadyExists]: EXIT.conflict,
};

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "metadata" in err;
}

const NATS_AUTH_CODES: readonly string[] = [
  ErrorCode.AuthorizationViolation,
  ErrorCode.AuthenticationExpired,
  ErrorCode.PermissionsViolation,
];

/** The message of a NATS authentication or permission failure anywhere in err's cause chain. */
function natsAuthFailure(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof NatsError && NATS_AUTH_CODES.includes(e.code)) return e.message;
  }
  return undefined;
}

/** The exit code and the message of a failure; `server` names the address a gRPC error came from. */
export function describeFailure(err: unknown, server?: string): { code: ExitCode; message: string } {
  const where = server === undefined ? "" : `${server}: `;
  if (err instanceof CliError) return { code: err.exitCode, message: err.message };
  if (isServiceError(err)) {
    const code = BY_GRPC_STATUS[err.code] ?? EXIT.failed;
    if (err.code === status.UNAVAILABLE) return { code, message: `${where}unreachable (${err.details})` };
    if (err.code === status.DEADLINE_EXCEEDED)
      return { code, message: `${where}no answer before the deadline` };
    return { code, message: `${where}${status[err.code]}: ${err.details}` };
  }
  // The bus gives these the failed_precondition kind (for services); to an operator, both are credentials.
  if (err instanceof BusCredentialsError || err instanceof BusPermissionError) {
    return { code: EXIT.auth, message: err.message };
  }
  const nats = natsAuthFailure(err);
  if (nats !== undefined) {
    return {
      code: EXIT.auth,
      message: `NATS refused: ${nats} (check --nats-creds and the credential's role)`,
    };
  }
  if (isSpecloopError(err)) return { code: BY_KIND[err.kind] ?? EXIT.failed, message: err.message };
  return { code: EXIT.failed, message: err instanceof Error ? err.message : String(err) };
}
