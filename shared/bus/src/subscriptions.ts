// The consumer loop bound to the two streams: traces (decoded with decodeTrace and checked against the
// consumer's limits, trace-validate.ts) and verdicts.
import type { PairwiseVerdict, Trace } from "@specloop/proto";
import type { Bus } from "./connection.js";
import { type ConsumerOptions, type RunningConsumer, startConsumer } from "./consumer.js";
import { TRACE_STREAM, traceSubject, VERDICT_STREAM, verdictSubject } from "./names.js";
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
