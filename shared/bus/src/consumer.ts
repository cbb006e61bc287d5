// THE durable pull-consumer loop, for traces and verdicts alike: explicit ack, bounded redelivery, one
// message at a time through a handler. A message that does not decode is terminated (never redelivered)
// and counted; a handler that throws gets its message nakked with a delay. Neither stops the loop, and
// the loop carries on across disconnects and server restarts until stop().
import type { Logger } from "@specloop/runtime";
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  nanos,
} from "nats";
import { BusUnavailableError } from "./errors.js";

/** What to do with a handled message: acknowledge it, drop it for good, or redeliver it after a delay. */
export type HandlerResult = "ack" | "term" | { nak: number };

export interface Delivery {
  subject: string;
  /** Stream sequence. */
  seq: number;
  /** How many times the server has delivered this message, this delivery included. */
  deliveryCount: number;
}

export type MessageHandler<T> = (value: T, delivery: Delivery) => HandlerResult | Promise<HandlerResult>;

export interface ConsumerOptions<T> {
  stream: string;
  /** Durable name (from names.ts); the consumer is created or updated to match these options. */
  durable: string;
  /** Only messages on this subject (e.g. one model's traces); all of the stream's when omitted. */
  filterSubject?: string;
  /** Turns bytes into a value; throwing marks the message as poison (terminated). */
  decode: (data: Uint8Array) => T;
  handler: MessageHandler<T>;
  /** Told about each message terminated as poison (after it is counted), e.g. to persist a counter. */
  onPoison?: (delivery: Delivery, error: unknown) => void;
  logger: Logger;
  /** How long the server waits for an ack before redelivering. */
  ackWaitMs?: number;
  /** Deliveries before the server gives up on a message. */
  maxDeliver?: number;
  maxAckPending?: number;
  /** Messages pulled per request. */
  batch?: number;
  /** Redelivery delay of a message whose handler threw. */
  errorNakDelayMs?: number;
  /**
   * The server removes the consumer once nobody has pulled from it for this long, so a consumer whose
   * service is gone leaves nothing behind; kept forever when omitted.
   */
  inactiveThresholdMs?: number;
  /** A new consumer starts at the first message stored at or after this time; at the stream's start when omitted. */
  startTime?: Date;
}

export interface ConsumerStats {
  delivered: number;
  acked: number;
  nakked: number;
  /** Messages terminated, by the handler or as poison. */
  terminated: number;
  /** Messages that failed to decode (malformed bytes, missing required fields). */
  poison: number;
  handlerErrors: number;
}

export interface RunningConsumer {
  /** A snapshot of the counters, as a plain object. */
  stats(): ConsumerStats;
  /** Ends the loop after the message in hand; resolves when it has ended. Safe to call twice. */
  stop(): Promise<void>;
}

export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_DELIVER = 5;
export const DEFAULT_MAX_ACK_PENDING = 1_000;
export const DEFAULT_BATCH = 64;
export const DEFAULT_ERROR_NAK_DELAY_MS = 1_000;
const RESTART_DELAY_MS = 500;

/** Creates the durable consumer, or updates its delivery limits when they changed. */
export async function ensureConsumer<T>(jsm: JetStreamManager, options: ConsumerOptions<T>): Promise<void> {
  const limits = {
    ack_wait: nanos(options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
    max_deliver: options.maxDeliver ?? DEFAULT_MAX_DELIVER,
    max_ack_pending: options.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
    ...(options.inactiveThresholdMs !== undefined
      ? { inactive_threshold: nanos(options.inactiveThresholdMs) }
      : {}),
  };
  const start =
    options.startTime !== undefined
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: options.startTime.toISOString() }
      : { deliver_policy: DeliverPolicy.All };
  try {
    const info = await jsm.consumers.info(options.stream, options.durable).catch((err: unknown) => {
      if (err instanceof Error && err.message === "consumer not found") return undefined;
      throw err;
    });
    if (info === undefined) {
      await jsm.consumers.add(options.stream, {
        durable_name: options.durable,
        ack_policy: AckPolicy.Explicit,
        ...start,
        ...(options.filterSubject !== undefined ? { filter_subject: options.filterSubject } : {}),
        ...limits,
      });
    } else if (
      info.config.ack_wait !== limits.ack_wait ||
      info.config.max_deliver !== limits.max_deliver ||
      info.config.max_ack_pending !== limits.max_ack_pending ||
      info.config.inactive_threshold !== limits.inactive_threshold
    ) {
      await jsm.consumers.update(options.stream, options.durable, limits);
    }
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new BusUnavailableError(
      `bus: cannot set up consumer ${options.durable} on ${options.stream}: ${why}`,
      {
        cause: err,
      },
    );
  }
}

/** Ensures the durable consumer and starts consuming; the loop runs until stop(). */
export async function startConsumer<T>(
  js: JetStreamClient,
  jsm: JetStreamManager,
  options: ConsumerOptions<T>,
): Promise<RunningConsumer> {
  await ensureConsumer(jsm, options);
  const consumer = await js.consumers.get(options.stream, options.durable);
  const log = options.logger.child({ consumer: options.durable, stream: options.stream });
  const stats: ConsumerStats = {
    delivered: 0,
    acked: 0,
    nakked: 0,
    terminated: 0,
    poison: 0,
    handlerErrors: 0,
  };
  const errorDelay = options.errorNakDelayMs ?? DEFAULT_ERROR_NAK_DELAY_MS;
  let stopped = false;
  let messages: ConsumerMessages | undefined;
  let wake: (() => void) | undefined;

  const handle = async (m: JsMsg): Promise<void> => {
    stats.delivered++;
    let value: T;
    try {
      value = options.decode(m.data);
    } catch (err) {
      stats.poison++;
      stats.terminated++;
      log.warn({ seq: m.seq, subject: m.subject, err }, "bus: undecodable message terminated");
      m.term(err instanceof Error ? err.message : "undecodable");
      options.onPoison?.({ subject: m.subject, seq: m.seq, deliveryCount: m.info.redeliveryCount }, err);
      return;
    }
    let result: HandlerResult;
    try {
      result = await options.handler(value, {
        subject: m.subject,
        seq: m.seq,
        deliveryCount: m.info.redeliveryCount,
      });
    } catch (err) {
      stats.handlerErrors++;
      log.warn({ seq: m.seq, err }, "bus: handler failed; message will be redelivered");
      result = { nak: errorDelay };
    }
    if (result === "ack") {
      m.ack();
      stats.acked++;
    } else if (result === "term") {
      m.term();
      stats.terminated++;
    } else {
      m.nak(result.nak);
      stats.nakked++;
    }
  };

  const loop = async (): Promise<void> => {
    while (!stopped) {
      try {
        messages = await consumer.consume({ max_messages: options.batch ?? DEFAULT_BATCH });
        if (stopped) {
          await messages.close();
          break;
        }
        for await (const m of messages) {
          await handle(m);
          if (stopped) break;
        }
      } catch (err) {
        if (!stopped) log.warn({ err }, "bus: consumer interrupted; restarting");
      }
      if (!stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, RESTART_DELAY_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  };
  const done = loop();

  let stopping: Promise<void> | undefined;
  return {
    stats: () => ({ ...stats }),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        wake?.();
        await messages?.close().catch(() => undefined);
        await done;
      })();
      return stopping;
    },
  };
}
