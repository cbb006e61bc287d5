// The one way a service connects to NATS: a bounded first connect (an unreachable server at startup is
// a clear UNAVAILABLE error naming the URLs), then unlimited reconnects, logged. With a credentials file
// the connection authenticates as that nkey user and takes its replies on the user's own inbox prefix
// (permissions.ts); with TLS files it speaks TLS.
import { readFileSync } from "node:fs";
import type { Logger } from "@specloop/runtime";
import {
  type Authenticator,
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  nkeyAuthenticator,
  nkeys,
} from "nats";
import type { BusConfig, BusTlsConfig } from "./config.js";
import { seedOf } from "./credentials.js";
import { BusCredentialsError, BusUnavailableError } from "./errors.js";
import { inboxPrefix } from "./permissions.js";

const DRAIN_TIMEOUT_MS = 2_000;

/** A live connection with its JetStream handles. */
export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** Flushes what was published and closes the connection; safe to call twice. */
  close(): Promise<void>;
}

export type BusConnectionConfig = Pick<BusConfig, "urls" | "name" | "connectTimeoutMs" | "reconnectWaitMs"> &
  Partial<Pick<BusConfig, "credentialsFile">> & { tls?: BusTlsConfig | undefined };

export function connectionOptions(config: BusConnectionConfig): ConnectionOptions {
  return {
    servers: [...config.urls],
    name: config.name,
    timeout: config.connectTimeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: config.reconnectWaitMs,
    waitOnFirstConnect: false,
    ...credentialOptions(config.credentialsFile ?? ""),
    ...tlsOptions(config.tls),
  };
}

/** The authenticator and inbox prefix of a credentials file (empty: none). Read once, at connect. */
function credentialOptions(file: string): Pick<ConnectionOptions, "authenticator" | "inboxPrefix"> {
  if (file === "") return {};
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new BusCredentialsError(file, `cannot read the bus credentials: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const seed = seedOf(file, text);
  const user = nkeys.fromSeed(seed).getPublicKey();
  const authenticator: Authenticator = text.includes("BEGIN NATS USER JWT")
    ? credsAuthenticator(new TextEncoder().encode(text))
    : nkeyAuthenticator(seed);
  return { authenticator, inboxPrefix: inboxPrefix(user) };
}

function tlsOptions(tls: BusTlsConfig | undefined): Pick<ConnectionOptions, "tls"> {
  if (tls === undefined) return {};
  const files = {
    ...(tls.caFile !== "" ? { caFile: tls.caFile } : {}),
    ...(tls.certFile !== "" ? { certFile: tls.certFile } : {}),
    ...(tls.keyFile !== "" ? { keyFile: tls.keyFile } : {}),
  };
  if (!tls.enabled && Object.keys(files).length === 0) return {};
  return { tls: files };
}

export async function connectBus(config: BusConnectionConfig, logger: Logger): Promise<Bus> {
  const urls = config.urls.join(", ");
  const options = connectionOptions(config);
  let nc: NatsConnection;
  try {
    nc = await connect(options);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new BusUnavailableError(`bus: cannot connect to NATS at ${urls}: ${why}`, { cause: err });
  }
  let jsm: JetStreamManager;
  try {
    jsm = await nc.jetstreamManager({ timeout: config.connectTimeoutMs });
  } catch (err) {
    await nc.close().catch(() => undefined);
    const why = err instanceof Error ? err.message : String(err);
    throw new BusUnavailableError(`bus: NATS at ${urls} has no JetStream: ${why}`, { cause: err });
  }
  logger.info({ server: nc.getServer(), name: config.name }, "bus connected");
  void logStatus(nc, logger);
  let closing: Promise<void> | undefined;
  return {
    nc,
    js: nc.jetstream(),
    jsm,
    close() {
      closing ??= (async () => {
        if (nc.isClosed()) return;
        // drain() waits for the server; a server that is away must not hold the caller forever.
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, DRAIN_TIMEOUT_MS);
        });
        await Promise.race([nc.drain().catch(() => undefined), gaveUp]);
        clearTimeout(timer);
        if (!nc.isClosed()) await nc.close();
      })();
      return closing;
    },
  };
}

async function logStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  for await (const s of nc.status()) {
    switch (s.type) {
      case "disconnect":
        logger.warn({ server: s.data }, "bus disconnected");
        break;
      case "reconnect":
        logger.info({ server: s.data }, "bus reconnected");
        break;
      case "error":
        logger.error({ err: s.data }, "bus connection error");
        break;
      default:
        logger.debug({ status: s.type, data: s.data }, "bus status");
    }
  }
}
