// Tests with auth on (exported through ./testing): a real nats-server whose only users are the roles'
// nkey users (credentials.ts), provisioned through the admin credential, and a bus config per role.
import {
  type NatsServer,
  type NatsServerOptions,
  startNatsServer,
  type TempDir,
  tempDir,
} from "@specloop/testkit";
import type { BusConfig, BusConfigInput } from "./config.js";
import type { Bus } from "./connection.js";
import { type BusCredentials, writeBusCredentials } from "./credentials.js";
import type { BusRole } from "./permissions.js";
import { openTestBus, testBusConfig } from "./test-support.js";

export interface SecuredTestBus {
  readonly server: NatsServer;
  readonly credentials: BusCredentials;
  /** The test bus config of a role (its credentials file set). */
  config(role: BusRole, overrides?: Partial<BusConfigInput>): BusConfig;
  /** Connects as `role` and provisions (what a service does at start); the caller closes it. */
  open(role: BusRole, overrides?: Partial<BusConfigInput>): Promise<Bus>;
  /** Stops the server and removes the credentials. */
  stop(): Promise<void>;
}

/** A nats-server with auth on, provisioned by the admin user. */
export async function startSecuredTestBus(options: NatsServerOptions = {}): Promise<SecuredTestBus> {
  const dir: TempDir = tempDir("specloop-creds");
  let server: NatsServer | undefined;
  try {
    const credentials = writeBusCredentials({ dir: dir.path });
    server = await startNatsServer({
      ...options,
      config: `${credentials.serverConfig}\n${options.config ?? ""}`,
    });
    const running = server;
    const config = (role: BusRole, overrides: Partial<BusConfigInput> = {}) =>
      testBusConfig(running.url, { credentialsFile: credentials.credentialsFile(role), ...overrides });
    const admin = await openTestBus(config("admin"));
    await admin.close();
    return {
      server: running,
      credentials,
      config,
      open: (role, overrides) => openTestBus(config(role, overrides)),
      async stop() {
        await running.stop();
        dir.dispose();
      },
    };
  } catch (err) {
    await server?.stop();
    dir.dispose();
    throw err;
  }
}
