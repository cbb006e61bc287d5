// For the node's own tests: a node on the bundled model (cpu backend, one kernel thread) behind a real gRPC
// server on loopback, with a client, and a helper that collects a Generate stream.
import { fileURLToPath } from "node:url";
import { credentials } from "@grpc/grpc-js";
import type { Bus } from "@specloop/bus";
import {
  GenerateRequest,
  type GenerateResponse,
  InferenceClient,
  InferenceService,
  SERVICE_NAMES,
} from "@specloop/proto";
import { createLogger, type GrpcServerHandle, loadConfig, startGrpcServer } from "@specloop/runtime";
import { Registry } from "prom-client";
import { inferenceConfigSchema } from "./config.js";
import { InferenceNode } from "./node.js";
import { inferenceServer } from "./server.js";
import type { SwapOutcome } from "./speculators.js";

const MODELS = fileURLToPath(new URL("../../../models/", import.meta.url));

export interface TestNode {
  node: InferenceNode;
  server: GrpcServerHandle;
  client: InferenceClient;
  close(): Promise<void>;
}

/** Starts a node with `env` over the defaults below (SPECLOOP_* keys). */
export async function startTestNode(
  env: Record<string, string>,
  options: { bus?: Bus; onSwap?: (o: SwapOutcome) => void } = {},
): Promise<TestNode> {
  const config = loadConfig(inferenceConfigSchema, {
    env: {
      SPECLOOP_NODE__MODEL_DIR: `${MODELS}tiny-code`,
      SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: `${MODELS}tiny-code-draft`,
      SPECLOOP_NODE__BACKEND: "cpu",
      // One kernel thread: test files run two at a time on CI's 2 cores, and spinning workers of two
      // processes on the same cores slow each other down by orders of magnitude.
      SPECLOOP_NODE__CPU_THREADS: "1",
      ...env,
    },
  });
  const logger = createLogger("inference-test", "warn");
  const node = await InferenceNode.open({ config, logger, registry: new Registry(), ...options });
  const server = await startGrpcServer({
    port: 0,
    logger,
    services: [
      { name: SERVICE_NAMES.inference, definition: InferenceService, implementation: inferenceServer(node) },
    ],
  });
  const client = new InferenceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  return {
    node,
    server,
    client,
    async close() {
      client.close();
      await server.shutdown("test done");
      await node.close();
    },
  };
}

/** Every response of one Generate call (request fields as a plain object; fromPartial fills the rest). */
export function generateStream(
  client: InferenceClient,
  req: Record<string, unknown>,
): Promise<GenerateResponse[]> {
  return new Promise((resolve, reject) => {
    const out: GenerateResponse[] = [];
    const s = client.generate(GenerateRequest.fromPartial(req as Partial<GenerateRequest>));
    s.on("data", (m: GenerateResponse) => out.push(m));
    s.on("error", reject);
    s.on("end", () => resolve(out));
  });
}
