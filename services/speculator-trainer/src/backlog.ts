// The trainer's backlog as the server sees it at the moment it is asked: traces in the stream this model's
// consumer has not been given yet, plus those given and not yet acknowledged.
import { type Bus, TRACE_STREAM, trainerTracesConsumer } from "@specloop/bus";

export async function traceBacklog(bus: Bus, modelId: string): Promise<number> {
  try {
    const info = await bus.jsm.consumers.info(TRACE_STREAM, trainerTracesConsumer(modelId));
    return info.num_pending + info.num_ack_pending;
  } catch {
    // No consumer yet (the intake has not started): nothing is waiting for it.
    return 0;
  }
}
