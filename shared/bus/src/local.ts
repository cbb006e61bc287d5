// The bus of a single machine (`npm start`, and tests that run the services as processes): under a data
// directory it writes every role's NATS credential, the trainer's manifest signing key, and a nats-server
// config with auth on; it provisions the streams with the admin credential; and it says which SPECLOOP_*
// variables give each service its credential, keys and spool. Files are made once and kept (0600), so a
// restart keeps the same users and keys.
//
//   <data dir>/bus/credentials/<role>.nk, auth.conf   (credentials.ts)
//   <data dir>/bus/keys/manifest-signing.key, .pub     (signing.ts)
//   <data dir>/bus/nats.conf                           (listen address, JetStream, include auth.conf)
//   <data dir>/nats/                                   (the JetStream store)
//   <data dir>/spool/                                  (the services' spools)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLogger } from "@specloop/runtime";
import { busConfig } from "./config.js";
import { connectBus } from "./connection.js";
import { type BusCredentials, SERVER_AUTH_FILE, writeBusCredentials } from "./credentials.js";
import { provisionBus } from "./provision.js";
import { type SigningKeyFiles, writeSigningKey } from "./signing.js";

export type ServiceRole = "node" | "trainer" | "verifier";

export interface LocalBusOptions {
  dataDir: string;
  /** Address and port nats-server listens on. */
  host: string;
  port: number;
}

export interface LocalBus {
  readonly credentials: BusCredentials;
  readonly signingKey: SigningKeyFiles;
  /** Pass to nats-server as `-c`, with `-sd` storeDir. */
  readonly serverConfigFile: string;
  /** The JetStream store directory. */
  readonly storeDir: string;
  readonly url: string;
  /** The SPECLOOP_BUS__* variables of a service: its credential, the manifest keys it needs, its spool. */
  env(role: ServiceRole): Record<string, string>;
}

export function writeLocalBus(options: LocalBusOptions): LocalBus {
  const busDir = join(options.dataDir, "bus");
  const credentials = writeBusCredentials({ dir: join(busDir, "credentials") });
  const signingKey = writeSigningKey(join(busDir, "keys"));
  const serverConfigFile = join(busDir, "nats.conf");
  // NATS resolves `include` against the including file's directory.
  writeFileSync(
    serverConfigFile,
    [
      "# Written by npm start (@specloop/bus writeLocalBus): JetStream, and only the roles' users may connect.",
      `listen: ${JSON.stringify(`${options.host}:${options.port}`)}`,
      // The store directory is a flag (-sd <data dir>/nats): nats-server refuses it twice.
      "jetstream: enabled",
      `include "credentials/${SERVER_AUTH_FILE}"`,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  const spool = join(options.dataDir, "spool");
  return {
    credentials,
    signingKey,
    serverConfigFile,
    storeDir: join(options.dataDir, "nats"),
    url: `nats://${options.host}:${options.port}`,
    env(role) {
      const env: Record<string, string> = {
        SPECLOOP_BUS__CREDENTIALS_FILE: credentials.credentialsFile(role),
        SPECLOOP_BUS__SPOOL__DIR: spool,
      };
      if (role === "node") env.SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS_FILE = signingKey.publicKeyFile;
      if (role === "trainer") env.SPECLOOP_BUS__MANIFESTS__SIGNING_KEY_FILE = signingKey.keyFile;
      return env;
    },
  };
}

/** Creates or updates the streams with the admin credential, before any service starts. */
export async function provisionLocalBus(local: LocalBus): Promise<void> {
  const logger = createLogger("bus-provision", "warn");
  const config = busConfig({
    urls: [local.url],
    credentialsFile: local.credentials.credentialsFile("admin"),
  });
  const bus = await connectBus(config, logger);
  try {
    await provisionBus(bus, config, logger);
  } finally {
    await bus.close();
  }
}
