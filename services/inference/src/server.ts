// The Inference gRPC API of a node. GetNodeStatus reports the node as it is; generation, completion and
// scoring need the engine and the scheduler, which come with issues 4 (engine) and 5 (inference node):
// until then they answer UNIMPLEMENTED with a message saying so, never a made-up result.
import { type InferenceServer, NodeStatus } from "@specloop/proto";
import { serverStream, UnimplementedError, unary } from "@specloop/runtime";

export const SERVICE_VERSION = "0.1.0";

export interface NodeIdentity {
  nodeId: string;
  modelId: string;
  startedAt: number;
}

/** The node's status as GetNodeStatus and the heartbeat report it. */
export function nodeStatus(node: NodeIdentity, now = Date.now()): NodeStatus {
  // Load, KV and acceptance fields stay at their zero values until the node runs the engine.
  return NodeStatus.fromPartial({
    nodeId: node.nodeId,
    modelId: node.modelId,
    uptimeSeconds: (now - node.startedAt) / 1000,
    reportedAt: new Date(now),
    version: SERVICE_VERSION,
  });
}

function notYet(rpc: string): UnimplementedError {
  return new UnimplementedError(`${rpc} needs the engine, which this node does not run yet`);
}

export function inferenceServer(node: NodeIdentity): InferenceServer {
  return {
    generate: serverStream(async function* () {
      yield* [];
      throw notYet("Generate");
    }),
    complete: unary(async () => {
      throw notYet("Complete");
    }),
    score: unary(async () => {
      throw notYet("Score");
    }),
    getNodeStatus: unary(async () => ({ status: nodeStatus(node) })),
  };
}
