// The node's heartbeat: its NodeStatus in the node KV bucket every interval, so operators and the
// trainer see which nodes are alive and what they serve. The bucket's TTL drops a node that stops.
import { type Bus, Heartbeats } from "@specloop/bus";
import type { NodeStatus } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";

export interface HeartbeatLoop {
  stop(): Promise<void>;
}

export async function startHeartbeat(
  bus: Bus,
  status: () => NodeStatus,
  intervalMs: number,
  logger: Logger,
): Promise<HeartbeatLoop> {
  const heartbeats = await Heartbeats.open(bus.js);
  let failing = false;
  const beat = async () => {
    try {
      await heartbeats.report(status());
      if (failing) logger.info("heartbeat: reporting again");
      failing = false;
    } catch (err) {
      // A heartbeat that cannot be written (NATS reconnecting) is not fatal: serving goes on.
      if (!failing) logger.warn({ err }, "heartbeat: cannot report node status");
      failing = true;
    }
  };
  await beat();
  const timer = setInterval(beat, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await heartbeats.withdraw(status().nodeId).catch(() => undefined);
    },
  };
}
