// For the verifier's own tests: a verifier behind a real gRPC server on loopback, with a real SQLite store
// and a real nats-server, an inference address nobody listens on (model judges fail cleanly), and one
// run-code token.
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import type { Bus } from "@specloop/bus";
import { openTestBus, testBusConfig, testLogger } from "@specloop/bus/internal";
import { VerifierClient, VerifierService } from "@specloop/proto";
import { type GrpcServerHandle, loadConfig, startGrpcServer, TokenAuth } from "@specloop/runtime";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { RUN_CODE_ROLE, verifierConfigSchema } from "./config.js";
import { openVerifierStore, type VerifierStore } from "./db/index.js";
import { connectInference, type InferenceNode } from "./judges/inference.js";
import { verifierServer } from "./server.js";

export interface TestVerifier {
  dir: TempDir;
  nats: NatsServer;
  bus: Bus;
  store: VerifierStore;
  storePath: string;
  node: InferenceNode;
  server: GrpcServerHandle;
  client: VerifierClient;
  close(): Promise<void>;
}

/** Starts one; `env` sets SPECLOOP_* keys over the defaults, `token` is accepted with the run-code role. */
export async function startTestVerifier(
  name: string,
  env: Record<string, string>,
  token: string,
): Promise<TestVerifier> {
  const dir = tempDir(`specloop-verifier-${name}-`);
  const nats = await startNatsServer();
  const bus = await openTestBus(testBusConfig(nats.url));
  const storePath = join(dir.path, "verifier.sqlite");
  const store = openVerifierStore(storePath);
  // Nothing listens on this port: the model judges must fail cleanly.
  const node = connectInference(`127.0.0.1:${await freePort()}`);
  const config = loadConfig(verifierConfigSchema, { env });
  const auth = new TokenAuth([{ identity: `${name}-test`, roles: [RUN_CODE_ROLE], token }]);
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    logger: testLogger,
    services: [
      {
        name: "specloop.v1.Verifier",
        definition: VerifierService,
        implementation: verifierServer({ db: store.db, bus, node, config, logger: testLogger, auth }),
      },
    ],
  });
  const client = new VerifierClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
  return {
    dir,
    nats,
    bus,
    store,
    storePath,
    node,
    server,
    client,
    async close() {
      client.close();
      await server.shutdown("test over");
      node.close();
      await bus.close();
      store.close();
      await nats.stop();
      dir.dispose();
    },
  };
}
