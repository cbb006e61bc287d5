// Where the CLI connects and with what, from flags or the environment (a flag wins):
//   --trainer <host:port>   SPECLOOP_TRAINER_ADDRESS      the speculator-trainer's gRPC address
//   --token <token>         SPECLOOP_ADMIN_TOKEN          the admin token (sent as "authorization: Bearer")
//   --token-file <file>     SPECLOOP_ADMIN_TOKEN_FILE     a file holding it (kept out of `ps` and history), or
//                                                         a service's tokens YAML (its admin entry is used)
//   --tls-ca <file>         SPECLOOP_TLS_CA_FILE          speak TLS, trusting this CA (PEM)
//   --nats <url>            SPECLOOP_NATS_URL             a NATS server URL (comma-separated for several)
//   --timeout <ms>          SPECLOOP_TIMEOUT_MS           the deadline of each gRPC call (default 10 s)
//   --nats-creds <file>     SPECLOOP_NATS_CREDS           a NATS credential: nkey seed (.nk) or .creds file
import { readFileSync } from "node:fs";
import { type CallOptions, type ChannelCredentials, credentials, Metadata } from "@grpc/grpc-js";
import { type Bus, connectBus } from "@specloop/bus";
import { bearerMetadata, createLogger } from "@specloop/runtime";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parse as parseYaml } from "yaml";
import { CliError, EXIT } from "./exit-codes.js";

export const DEFAULT_TRAINER_ADDRESS = "127.0.0.1:50052";
export const DEFAULT_INFERENCE_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
export const DEFAULT_TIMEOUT_MS = 10_000;

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

export interface GrpcTargetOptions {
  token?: string;
  tokenFile?: string;
  tlsCa?: string;
  timeout: number;
}

export interface TrainerOptions extends GrpcTargetOptions {
  trainer: string;
}

export interface NatsOptions {
  nats: string;
  natsCreds?: string;
}

export interface JsonOption {
  json?: boolean;
}

/** --token, --token-file, --tls-ca and --timeout, for a command that calls a gRPC service. */
export function addGrpcTargetOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--token <token>", "admin token").env("SPECLOOP_ADMIN_TOKEN"))
    .addOption(
      new Option("--token-file <file>", "file holding the admin token").env("SPECLOOP_ADMIN_TOKEN_FILE"),
    )
    .addOption(
      new Option("--tls-ca <file>", "use TLS, trusting this CA certificate (PEM)").env(
        "SPECLOOP_TLS_CA_FILE",
      ),
    )
    .addOption(
      new Option("--timeout <ms>", "deadline of each call, milliseconds")
        .env("SPECLOOP_TIMEOUT_MS")
        .argParser(positiveInt)
        .default(DEFAULT_TIMEOUT_MS),
    );
}

export function addTrainerOptions(cmd: Command): Command {
  return addGrpcTargetOptions(
    cmd.addOption(
      new Option("--trainer <host:port>", "the speculator-trainer's gRPC address")
        .env("SPECLOOP_TRAINER_ADDRESS")
        .default(DEFAULT_TRAINER_ADDRESS),
    ),
  );
}

export function addNatsOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--nats <url>", "NATS server URL(s), comma-separated")
        .env("SPECLOOP_NATS_URL")
        .default(DEFAULT_NATS_URL),
    )
    .addOption(
      new Option("--nats-creds <file>", "NATS credential: an nkey seed file or a .creds file").env(
        "SPECLOOP_NATS_CREDS",
      ),
    );
}

export function addJsonOption(cmd: Command): Command {
  return cmd.option("--json", "print JSON for scripts instead of tables");
}

/**
 * The token a --token-file holds: the file's text (a mounted Secret), or, when the file is a service's
 * tokens list (YAML entries of identity, roles and token, as server.auth.tokensFile reads and `npm start`
 * writes), the token of its first entry with the admin role.
 */
export function tokenOfFile(file: string, text: string): string {
  const trimmed = text.trim();
  if (trimmed === "") throw new CliError(`the token file ${file} is empty`, EXIT.auth);
  if (!trimmed.startsWith("-") && !trimmed.startsWith("[")) return trimmed;
  let entries: unknown;
  try {
    entries = parseYaml(trimmed);
  } catch (err) {
    throw new CliError(`${file}: not a token, nor a YAML list of token entries`, EXIT.auth, { cause: err });
  }
  const admin = (Array.isArray(entries) ? entries : []).find(
    (e): e is { token: string } =>
      typeof e === "object" &&
      e !== null &&
      typeof (e as { token?: unknown }).token === "string" &&
      Array.isArray((e as { roles?: unknown }).roles) &&
      (e as { roles: unknown[] }).roles.includes("admin"),
  );
  if (admin === undefined) {
    throw new CliError(`${file}: no entry with the admin role and a token in it`, EXIT.auth);
  }
  return admin.token.trim();
}

/** The admin token from --token or --token-file, if either is given. */
export function adminToken(opts: GrpcTargetOptions): string | undefined {
  if (opts.token !== undefined && opts.tokenFile !== undefined) {
    throw new CliError("give one of --token and --token-file (or their SPECLOOP_ADMIN_TOKEN* variables)");
  }
  if (opts.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.tokenFile, "utf8");
    } catch (err) {
      throw new CliError(
        `cannot read the token file ${opts.tokenFile}: ${(err as Error).message}`,
        EXIT.auth,
        {
          cause: err,
        },
      );
    }
    return tokenOfFile(opts.tokenFile, text);
  }
  const token = opts.token?.trim();
  return token === "" ? undefined : token;
}

export function channelCredentials(opts: GrpcTargetOptions): ChannelCredentials {
  if (opts.tlsCa === undefined) return credentials.createInsecure();
  let ca: Buffer;
  try {
    ca = readFileSync(opts.tlsCa);
  } catch (err) {
    throw new CliError(`cannot read the CA file ${opts.tlsCa}: ${(err as Error).message}`, EXIT.usage, {
      cause: err,
    });
  }
  return credentials.createSsl(ca);
}

/** Metadata (with the bearer token when there is one) and the deadline of one call. */
export function callParts(opts: GrpcTargetOptions): { metadata: Metadata; options: Partial<CallOptions> } {
  const token = adminToken(opts);
  return {
    metadata: token === undefined ? new Metadata() : bearerMetadata(token),
    options: { deadline: new Date(Date.now() + opts.timeout) },
  };
}

/** A connection to NATS as the CLI uses it: one attempt window, no service logging. */
export function openBus(opts: NatsOptions): Promise<Bus> {
  const urls = opts.nats
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u !== "");
  if (urls.length === 0) throw new CliError("--nats: give at least one URL");
  return connectBus(
    {
      urls,
      name: "specloop-cli",
      connectTimeoutMs: 5_000,
      reconnectWaitMs: 500,
      credentialsFile: opts.natsCreds ?? "",
    },
    createLogger("cli", "silent"),
  );
}
