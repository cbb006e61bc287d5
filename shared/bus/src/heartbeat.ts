// Node heartbeats: each node puts its NodeStatus (ts-proto JSON) under its node id in the heartbeat
// bucket; entries expire after the bucket's TTL, so what is listed is the nodes alive lately.
import { NodeStatus } from "@specloop/proto";
import type { JetStreamClient, KV } from "nats";
import { BusNotFoundError, InvalidMessageError } from "./errors.js";
import { HEARTBEAT_BUCKET, heartbeatKey } from "./names.js";

export class Heartbeats {
  private constructor(private readonly kv: KV) {}

  /** Binds to the provisioned heartbeat bucket (see provisionBus). */
  static async open(js: JetStreamClient): Promise<Heartbeats> {
    try {
      return new Heartbeats(await js.views.kv(HEARTBEAT_BUCKET, { bindOnly: true }));
    } catch (err) {
      throw new BusNotFoundError("bus: heartbeat bucket is missing; provision the bus first", { cause: err });
    }
  }

  /** Records a node as alive with its status (reported_at set to now when missing). */
  async report(status: NodeStatus): Promise<void> {
    if (status.nodeId === "") throw new InvalidMessageError("node_id", "is required");
    const value: NodeStatus = { ...status, reportedAt: status.reportedAt ?? new Date() };
    await this.kv.put(heartbeatKey(status.nodeId), JSON.stringify(NodeStatus.toJSON(value)));
  }

  /** Withdraws a node (a clean shutdown), without waiting for its heartbeat to expire. */
  async withdraw(nodeId: string): Promise<void> {
    await this.kv.delete(heartbeatKey(nodeId));
  }

  /** The status of every node whose heartbeat has not expired, by node id order. */
  async live(): Promise<NodeStatus[]> {
    const keys: string[] = [];
    for await (const key of await this.kv.keys()) keys.push(key);
    const out: NodeStatus[] = [];
    for (const key of keys.sort()) {
      const entry = await this.kv.get(key);
      if (entry === null || entry.operation !== "PUT") continue;
      try {
        out.push(NodeStatus.fromJSON(entry.json()));
      } catch {
        // A value that is not a NodeStatus is not a live node; the next report overwrites it.
      }
    }
    return out;
  }
}
