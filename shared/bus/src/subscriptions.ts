// The consumer loop bound to the two streams: traces (decoded with decodeTrace) and verdicts.
import type { PairwiseVerdict, Trace } from "@specloop/proto";
import type { Bus } from "./connection.js";
import { type ConsumerOptions, type RunningConsumer, startConsumer } from "./consumer.js";
import { TRACE_STREAM, traceSubject, VERDICT_STREAM, verdictSubject } from "./names.js";
import { decodeTrace, decodeVerdict } from "./traces.js";

export type StreamConsumerOptions<T> = Omit<ConsumerOptions<T>, "stream" | "decode" | "filterSubject"> & {
  /** Only this model's messages; every model's when omitted. */
  modelId?: string;
};

export function consumeTraces(bus: Bus, options: StreamConsumerOptions<Trace>): Promise<RunningConsumer> {
  const { modelId, ...rest } = options;
  return startConsumer(bus.js, bus.jsm, {
    ...rest,
    stream: TRACE_STREAM,
    decode: decodeTrace,
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
