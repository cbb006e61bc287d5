// SpooledPublisher: publishes messages to JetStream in the order they were offered, without ever making
// the caller wait, and keeps them while the bus is away: on disk under a directory (spool-log.ts), or in
// memory when no directory is configured. Used for traces (inference node) and verdicts (verifier).
//
//   const spool = SpooledPublisher.open(bus, { dir, maxBytes, logger, onDropped });
//   spool.offer({ subject, data, msgId });        // or an array: all or nothing; false when dropped
//   await spool.flush(2_000);                      // true when nothing is left waiting
//   await spool.close();                           // what still waits stays on disk for the next open()
//
// While the bus is up, offered messages wait in memory and one loop publishes them, one at a time, each
// acknowledged by the stream before the next (so the stream holds them in offer order). When the
// connection drops, or a publish fails for want of the bus (timeout, no responders), everything waiting
// is written to disk and offers go there too, until the disk is drained; retries back off up to 2 s and restart at once
// when the connection comes back. A message the server refuses for good (no permission, too large) is
// dropped ("rejected"); one that would take the spool over maxBytes is dropped ("full"); both are counted
// and told to onDropped. Every message keeps its Nats-Msg-Id, so one sent twice (a publish that timed out
// but had arrived, a crash before the position was saved) is stored once.
import type { Logger } from "@specloop/runtime";
import { ErrorCode, type JetStreamClient, type NatsConnection, NatsError } from "nats";
import { recordSize, SpoolLog, type SpoolMessage } from "./spool-log.js";

export type { SpoolMessage } from "./spool-log.js";

export type SpoolDropReason = "full" | "rejected";

export interface SpoolOptions {
  /** Directory of this publisher's files (one per publisher); empty: memory only. */
  dir: string;
  /** Bytes the spool may hold, memory and disk together; an offer beyond is dropped. */
  maxBytes: number;
  logger: Logger;
  /** How long one publish waits for the stream's acknowledgement. */
  publishTimeoutMs?: number;
  onPublished?: (message: SpoolMessage) => void;
  onDropped?: (message: SpoolMessage, reason: SpoolDropReason, error?: unknown) => void;
}

export interface SpoolStats {
  published: number;
  dropped: Record<SpoolDropReason, number>;
  /** Bytes offered and not yet published or dropped (memory and disk). */
  pendingBytes: number;
  /** Messages written to disk (each counted once). */
  spooled: number;
}

export const DEFAULT_SPOOL_PUBLISH_TIMEOUT_MS = 5_000;
/** Waiting messages kept in memory (while the bus is up) before they go to disk. */
const MEMORY_BYTES = 8 * 1024 ** 2;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2_000;
const CLOSE_WAIT_MS = 1_000;

type Connection = { readonly js: JetStreamClient; readonly nc: NatsConnection };

export class SpooledPublisher {
  private readonly memory: SpoolMessage[] = [];
  private memoryBytes = 0;
  private readonly counts = { published: 0, full: 0, rejected: 0, spooled: 0 };
  private closed = false;
  private wake: (() => void) | undefined;
  /** Something happened since the loop last looked (an offer, a reconnect): it must not sleep. */
  private woken = false;
  /** The connection came back since the last failed publish: retry now, not after the back-off. */
  private reconnected = false;
  /** The bus is away (disconnected, or the last publish failed): offers go to disk, not memory. */
  private away = false;
  private readonly loop: Promise<void>;
  /** Set while a message taken from memory is being published (it may be moved to disk meanwhile). */
  private inflight: SpoolMessage | undefined;
  private inflightSpilled = false;

  private constructor(
    private readonly bus: Connection,
    private readonly options: SpoolOptions,
    private readonly log: SpoolLog | undefined,
  ) {
    this.loop = this.pump();
    void this.watchReconnects();
  }

  /** Starts publishing (first what an earlier process left in `dir`). Throws if another process holds `dir`. */
  static open(bus: Connection, options: SpoolOptions): SpooledPublisher {
    const log = options.dir === "" ? undefined : SpoolLog.open(options.dir, options.logger);
    return new SpooledPublisher(bus, options, log);
  }

  /**
   * Queues messages (all or none); false when they would take the spool over its bound (or the disk
   * refused them). Never throws, never waits on the bus.
   */
  offer(messages: SpoolMessage | readonly SpoolMessage[]): boolean {
    const list = Array.isArray(messages) ? messages : [messages as SpoolMessage];
    const size = list.reduce((n, m) => n + recordSize(m), 0);
    if (this.closed || this.bytes() + size > this.options.maxBytes) {
      for (const m of list) {
        this.counts.full++;
        this.options.onDropped?.(m, "full");
      }
      return false;
    }
    let queued = 0;
    try {
      for (const m of list) {
        this.enqueue(m);
        queued++;
      }
    } catch (err) {
      // The disk refused a write (full, removed): what was not written is dropped, counted, and logged.
      this.options.logger.error({ err }, "spool: cannot write to the spool directory");
      for (const m of list.slice(queued)) {
        this.counts.full++;
        this.options.onDropped?.(m, "full", err);
      }
    }
    this.signal();
    return queued === list.length;
  }

  stats(): SpoolStats {
    return {
      published: this.counts.published,
      dropped: { full: this.counts.full, rejected: this.counts.rejected },
      pendingBytes: this.bytes(),
      spooled: this.counts.spooled,
    };
  }

  /** Waits at most `timeoutMs` for every waiting message to be published; true when none is left. */
  async flush(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.bytes() > 0 || this.inflight !== undefined) {
      if (Date.now() >= deadline) return false;
      await sleep(10);
    }
    return true;
  }

  /** Stops publishing; with a directory, what still waits is kept there for the next open(). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signal();
    // A publish in flight may wait for its timeout; what it was sending is spilled below and sent again
    // by the next open() (stored once: same Nats-Msg-Id).
    await Promise.race([this.loop, sleep(CLOSE_WAIT_MS)]);
    if (this.log !== undefined) {
      try {
        this.spill();
      } catch (err) {
        this.options.logger.error({ err }, "spool: cannot keep what still waits in the spool directory");
      }
      this.log.close();
    }
  }

  private bytes(): number {
    return this.memoryBytes + (this.log?.bytes ?? 0);
  }

  private enqueue(m: SpoolMessage): void {
    const log = this.log;
    // Memory while the bus is up and the disk is empty (then memory holds every waiting message, in
    // order); the disk while the bus is away or anything is there, so nothing overtakes what waits on disk.
    if (log === undefined || (!this.away && log.empty && this.memoryBytes + recordSize(m) <= MEMORY_BYTES)) {
      this.memory.push(m);
      this.memoryBytes += recordSize(m);
      return;
    }
    if (!log.empty || this.memory.length === 0) {
      log.append(m);
      this.counts.spooled++;
      return;
    }
    this.spill();
    log.append(m);
    this.counts.spooled++;
  }

  /** Moves what waits in memory to the disk (empty then, so the order is kept). */
  private spill(): void {
    const log = this.log;
    if (log === undefined || this.memory.length === 0) return;
    if (this.inflight !== undefined && this.memory[0] === this.inflight) this.inflightSpilled = true;
    for (const m of this.memory) {
      log.append(m);
      this.counts.spooled++;
    }
    this.memory.length = 0;
    this.memoryBytes = 0;
  }

  private async next(): Promise<{ message: SpoolMessage; fromDisk: boolean } | undefined> {
    const head = this.memory[0];
    if (head !== undefined) return { message: head, fromDisk: false };
    const message = await this.log?.peek();
    return message === undefined ? undefined : { message, fromDisk: true };
  }

  private async pump(): Promise<void> {
    let retryMs = RETRY_MIN_MS;
    while (!this.closed) {
      this.woken = false;
      if (this.bus.nc.isClosed()) {
        // The connection is gone for good (the service is stopping): keep what waits for close().
        await this.sleepUntilWoken(60_000);
        continue;
      }
      const next = await this.next();
      if (next === undefined) {
        await this.sleepUntilWoken(60_000);
        continue;
      }
      const { message, fromDisk } = next;
      if (!fromDisk) {
        this.inflight = message;
        this.inflightSpilled = false;
      }
      let failure: unknown;
      try {
        await this.bus.js.publish(message.subject, message.data, {
          msgID: message.msgId,
          timeout: this.options.publishTimeoutMs ?? DEFAULT_SPOOL_PUBLISH_TIMEOUT_MS,
        });
      } catch (err) {
        failure = err;
      }
      if (this.closed) return;
      const transient = failure !== undefined && isTransient(failure);
      if (failure === undefined || !transient) {
        await this.remove(fromDisk);
        if (failure === undefined) {
          this.away = false;
          this.counts.published++;
          this.options.onPublished?.(message);
        } else {
          this.counts.rejected++;
          this.options.logger.warn(
            { err: failure, msgId: message.msgId },
            "spool: the server refused a message",
          );
          this.options.onDropped?.(message, "rejected", failure);
        }
        this.inflight = undefined;
        retryMs = RETRY_MIN_MS;
        continue;
      }
      this.inflight = undefined;
      if (retryMs === RETRY_MIN_MS) {
        this.options.logger.warn(
          { err: failure, waiting: this.bytes(), toDisk: this.log !== undefined },
          "spool: cannot publish; keeping messages until the bus is back",
        );
      }
      // The bus is away: what waits goes to disk now, and what comes next follows it there. Offers do
      // not cut the back-off short (they would spin the loop on a bus that fails fast); a reconnect does.
      this.away = true;
      this.spill();
      this.reconnected = false;
      await this.sleep(retryMs, () => this.reconnected || this.closed);
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    }
  }

  /** Drops the message just published (or refused) from where it waited. */
  private async remove(fromDisk: boolean): Promise<void> {
    if (fromDisk || this.inflightSpilled) {
      // Spilled while in flight, it is the first message on disk (the disk was empty: see enqueue).
      if (!fromDisk) await this.log?.peek();
      this.log?.advance();
      return;
    }
    const m = this.memory.shift();
    if (m !== undefined) this.memoryBytes -= recordSize(m);
  }

  private signal(): void {
    this.woken = true;
    this.wake?.();
  }

  private sleepUntilWoken(ms: number): Promise<void> {
    return this.sleep(ms, () => this.woken);
  }

  /** Sleeps `ms`, or until a signal() finds `until` true. */
  private sleep(ms: number, until: () => boolean): Promise<void> {
    if (until()) return Promise.resolve();
    return new Promise((resolve) => {
      // The spool never keeps a process alive on its own.
      const timer = setTimeout(done, ms).unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        if (until()) done();
      };
    });
  }

  private async watchReconnects(): Promise<void> {
    for await (const s of this.bus.nc.status()) {
      if (this.closed) return;
      if (s.type === "reconnect") {
        this.reconnected = true;
        this.signal();
      } else if (s.type === "disconnect") {
        // Away: what waits goes to disk now (not after a publish times out), and offers follow it.
        this.away = true;
        try {
          this.spill();
        } catch (err) {
          this.options.logger.error({ err }, "spool: cannot write to the spool directory");
        }
      }
    }
  }
}

/** Whether a failed publish may succeed later (the bus is away) rather than never (refused). */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof NatsError)) return false;
  switch (err.code) {
    case ErrorCode.PermissionsViolation:
    case ErrorCode.MaxPayloadExceeded:
    case ErrorCode.BadPayload:
    case ErrorCode.BadSubject:
    case ErrorCode.BadHeader:
      return false;
  }
  // JetStream API errors carry the HTTP-like code of the stream's answer: 4xx is about the message
  // (too large, wrong stream), except 408, a timeout; 503 is JetStream not ready.
  return !(/^4\d\d$/.test(err.code) && err.code !== "408");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
