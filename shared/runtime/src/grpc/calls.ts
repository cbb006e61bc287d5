// In-flight calls: each accepted call gets a scope holding its AbortSignal, deadline timer, metrics
// and log context; the tracker knows which calls are running so shutdown can drain or cut them off.
import type { Metadata, ServerUnaryCall } from "@grpc/grpc-js";
import { CancelledError, DeadlineExceededError } from "../errors.js";
import type { Logger } from "../logging.js";
import type { GrpcServerMetrics } from "../metrics.js";
import { errorToStatus, type GrpcStatus, Status, statusName } from "./status.js";

/** What a handler gets besides its request. */
export interface CallContext {
  /** Aborts when the client cancels, the deadline passes, or shutdown cuts the call off. */
  readonly signal: AbortSignal;
  /** When the client stops waiting; undefined when it set no deadline. */
  readonly deadline: Date | undefined;
  /** The request's metadata (headers). */
  readonly metadata: Metadata;
  /** The service's logger, bound to this call's method. */
  readonly logger: Logger;
  /** The full method path, "/specloop.v1.Inference/Generate". */
  readonly method: string;
}

/** Tracks the calls in flight and whether new ones are accepted. */
export class CallTracker {
  private readonly active = new Set<(reason: Error) => void>();
  private idle: Array<() => void> = [];
  private open = true;

  get size(): number {
    return this.active.size;
  }

  get accepting(): boolean {
    return this.open;
  }

  /** New calls are refused with UNAVAILABLE from now on. */
  stopAccepting(): void {
    this.open = false;
  }

  add(abort: (reason: Error) => void): void {
    this.active.add(abort);
  }

  remove(abort: (reason: Error) => void): void {
    this.active.delete(abort);
    if (this.active.size === 0) for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Resolves true when no call is in flight, or false once `timeoutMs` passes first. */
  waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.active.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Aborts every call in flight; returns how many there were. */
  abortAll(reason: Error): number {
    const calls = [...this.active];
    for (const abort of calls) abort(reason);
    return calls.length;
  }
}

/** What the server lends its handlers. */
export interface HandlerRuntime {
  logger: Logger;
  calls: CallTracker;
  metrics?: GrpcServerMetrics | undefined;
}

export type CallType = "unary" | "server_stream";

export interface CallScope {
  readonly ctx: CallContext;
  /** Called once, with the status to send, when the signal aborts. */
  onAbort(listener: (status: GrpcStatus) => void): void;
  /** The status for a thrown error; once the signal has aborted, the abort's reason decides it. */
  fail(err: unknown): GrpcStatus;
  /** The call's status has been sent: stop tracking it. */
  close(code: Status): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export const SHUTTING_DOWN: GrpcStatus["details"] = "server is shutting down";

/** Opens a scope for a new call, or returns undefined when the server no longer accepts calls. */
export function openCall(
  rt: HandlerRuntime,
  method: string,
  type: CallType,
  call: Pick<ServerUnaryCall<unknown, unknown>, "getDeadline" | "metadata" | "on">,
): CallScope | undefined {
  const [service = "", name = ""] = method.slice(1).split("/");
  const endMetrics = rt.metrics?.start(service, name, type);
  if (!rt.calls.accepting) {
    endMetrics?.(statusName(Status.UNAVAILABLE));
    return undefined;
  }
  const started = Date.now();
  const controller = new AbortController();
  const abort = (reason: Error): void => controller.abort(reason);
  rt.calls.add(abort);

  const deadline = toDate(call.getDeadline());
  // Timers past 2^31 - 1 ms fire at once; a deadline that far away is as good as none.
  const remaining = deadline === undefined ? Number.POSITIVE_INFINITY : deadline.getTime() - started;
  const timer =
    remaining > MAX_TIMER_MS
      ? undefined
      : setTimeout(() => abort(new DeadlineExceededError("deadline exceeded")), remaining);
  call.on("cancelled", () => {
    const past = deadline !== undefined && Date.now() >= deadline.getTime();
    abort(
      past ? new DeadlineExceededError("deadline exceeded") : new CancelledError("cancelled by the client"),
    );
  });

  const logger = rt.logger.child({ method });
  const ctx: CallContext = { signal: controller.signal, deadline, metadata: call.metadata, logger, method };
  let closed = false;
  return {
    ctx,
    onAbort(listener) {
      controller.signal.addEventListener(
        "abort",
        () => listener(errorToStatus(controller.signal.reason, logger)),
        {
          once: true,
        },
      );
    },
    fail(err) {
      return errorToStatus(controller.signal.aborted ? controller.signal.reason : err, logger);
    },
    close(code) {
      if (closed) return;
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      rt.calls.remove(abort);
      endMetrics?.(statusName(code));
      logger.debug({ code: statusName(code), ms: Date.now() - started }, "call finished");
    },
  };
}

/** grpc-js gives a Date, a number of ms since the epoch, or Infinity for "no deadline". */
function toDate(deadline: Date | number): Date | undefined {
  if (deadline instanceof Date) return deadline;
  return Number.isFinite(deadline) ? new Date(deadline) : undefined;
}
