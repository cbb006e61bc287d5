// The consumer loop bound to the two streams: traces (decoded with decodeTrace and checked against the
// consumer's limits, trace-validate.ts) and verdicts; and a one-off read of a model's recent traces (a
// restarted trainer refills its replay buffer with what it had consumed).

import type { PairwiseVerdict, Trace } from "@specloop/proto";
import { DeliverPolicy } from "nats";
import type { Bus } from "./connection.js";
import { type ConsumerOptions, type RunningConsumer, startConsumer } from "./consumer.js";
import { TRACE_STREAM, traceSubject, VERDICT_STREAM, verdictSubject } from "./names.js";
import { TraceAssembler } from "./trace-assemble.js";
import { type TraceLimits, validateTraceContent } from "./trace-validate.js";
import { decodeTrace, decodeVerdict } from "./traces.js";

export type StreamConsumerOptions<T> = Omit<ConsumerOptions<T>, "stream" | "decode" | "filterSubject"> & {
  /** Only this model's messages; every model's when omitted. */
  modelId?: string;
};

export type TraceConsumerOptions = StreamConsumerOptions<Trace> & {
  /**
   * What every trace is checked against before the handler sees it (vocabulary, shapes, sizes); a trace
   * that breaks it is terminated and counted as poison, its TraceRejectedError given to onPoison.
   */
  limits: TraceLimits;
};

export function consumeTraces(bus: Bus, options: TraceConsumerOptions): Promise<RunningConsumer> {
  const { modelId, limits, ...rest } = options;
  return startConsumer(bus.js, bus.jsm, {
    ...rest,
    stream: TRACE_STREAM,
    decode: (data) => {
      const trace = decodeTrace(data);
      validateTraceContent(trace, limits);
      return trace;
    },
    ...(modelId !== undefined ? { filterSubject: traceSubject(modelId) } : {}),
  });
}

export function consumeVerdicts(
  bus: Bus,
  options: StreamConsumerOptions<PairwiseVerdict>,
): Promise<RunningConsumer> {
  const { modelId, ...rest } = options;
  return startConsumer(bus.js, bus.jsm, {
    ...rest,
    stream: VERDICT_STREAM,
    decode: decodeVerdict,
    ...(modelId !== undefined ? { filterSubject: verdictSubject(modelId) } : {}),
  });
}

export interface RecentTracesOptions {
  modelId: string;
  limits: TraceLimits;
  /** The stream sequence of the newest trace to read (the trainer's last consumed one). */
  toSeq: number;
  /** Messages of the whole stream scanned back from toSeq (other models' included); bounds the read. */
  scan: number;
  /** Whole traces kept, the newest. */
  max: number;
}

/**
 * A model's whole traces among the stream's messages (toSeq - scan, toSeq], oldest first, at most `max`
 * (the newest), read with an ordered consumer that acknowledges nothing and leaves no consumer behind.
 * Messages that do not decode or break the limits are skipped (the durable consumer terminated them).
 */
export async function readRecentTraces(bus: Bus, options: RecentTracesOptions): Promise<Trace[]> {
  const fromSeq = Math.max(1, options.toSeq - options.scan + 1);
  if (options.toSeq < 1 || options.max < 1) return [];
  const consumer = await bus.js.consumers.get(TRACE_STREAM, {
    // One subject as a string: filter_subject, which servers before 2.10 take too.
    filterSubjects: traceSubject(options.modelId),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: fromSeq,
  });
  const assembler = new TraceAssembler();
  const out: Trace[] = [];
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
    let got = 0;
    let past = false;
    for await (const m of batch) {
      got++;
      if (m.seq > options.toSeq) {
        past = true;
        break;
      }
      try {
        const trace = decodeTrace(m.data);
        validateTraceContent(trace, options.limits);
        const whole = assembler.add(trace);
        if (whole !== undefined) out.push(whole);
        if (out.length > options.max) out.shift();
      } catch {
        // poison: the durable consumer terminated it; nothing to learn from
      }
      if (m.seq === options.toSeq) past = true;
    }
    if (past || got === 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return out;
}
