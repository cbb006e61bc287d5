// Who is calling, for the RPCs that must not be open to anyone who can reach the port (the verifier's
// tests judge runs code; the trainer's admin RPCs change what the fleet serves). A caller sends
//   authorization: Bearer <token>
// as gRPC metadata; the server knows a list of {identity, roles, token} and answers
//   UNAUTHENTICATED    no token, a malformed header, a token it does not know, or no tokens configured;
//   PERMISSION_DENIED  a known identity without the role the call needs.
// Tokens are compared as SHA-256 digests with crypto.timingSafeEqual, against every entry, so neither the
// answer's timing nor an early exit says how much of a guess was right. The identity a handler records is
// the one this returns, never a field the client filled in.
//
// Config (server.auth and server.tls in serverConfigSchema; the secret of an entry comes from exactly one of
// token, tokenEnv or tokenFile, so that no secret needs to be written into a config file):
//   server:
//     auth:
//       tokens:
//         - { identity: ci, roles: [run-code], tokenFile: /run/secrets/ci-token }
//         - { identity: ops, roles: [admin, run-code], tokenEnv: OPS_TOKEN }
//       tokensFile: /etc/specloop/tokens.yaml   # a YAML or JSON list of the same entries (a mounted Secret)
//     tls: { certFile: server.pem, keyFile: server-key.pem, clientCaFile: ca.pem }   # clientCaFile: mTLS
// From the environment: SPECLOOP_SERVER__AUTH__TOKENS_FILE, SPECLOOP_SERVER__TLS__CERT_FILE, ...
//
// API:
//   const auth = TokenAuth.fromConfig(config.server.auth);   // reads files/env once; ConfigError names the key
//   const who = auth.require(ctx.metadata, "run-code");       // Identity, or throws Unauthenticated/PermissionDenied
//   auth.authenticate(ctx.metadata)                           // Identity, whatever its roles
//   auth.configured                                           // false when no token is known (all calls refused)
//   serverCredentials(config.server.tls)                      // ServerCredentials: TLS when set, else insecure
//   bearerMetadata(token)                                     // a client's Metadata carrying the header
//   generateToken()                                           // 32 random bytes, base64url (43 characters)
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { Metadata, ServerCredentials } from "@grpc/grpc-js";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ConfigError, PermissionDeniedError, UnauthenticatedError } from "../errors.js";

/** The metadata key (gRPC keys are lower case). */
export const AUTHORIZATION_KEY = "authorization";
/** Shorter tokens are refused at load: a token is a secret, not a password a person types. */
export const MIN_TOKEN_LENGTH = 16;
const MAX_TOKEN_LENGTH = 4096;
/** Identities and roles appear in logs and stored rows: short, plain names. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export const tokenEntrySchema = z
  .object({
    /** Who holds the token, as handlers record it ("ci", "trainer-admin"). */
    identity: z.string().regex(NAME, "a name of letters, digits and . _ : @ -, at most 128 characters"),
    /** What the holder may do; each RPC that checks names the one role it needs. */
    roles: z.array(z.string().regex(NAME, "a plain name")).default([]),
    /** The token itself (keep config files holding it private). */
    token: z.string().optional(),
    /** The name of an environment variable holding the token. */
    tokenEnv: z.string().min(1).optional(),
    /** A file holding the token (surrounding whitespace is ignored). */
    tokenFile: z.string().min(1).optional(),
  })
  .strict();
export type TokenEntry = z.output<typeof tokenEntrySchema>;

export const authConfigSchema = z.object({
  tokens: z.array(tokenEntrySchema).default([]),
  /** A YAML or JSON file holding a list of token entries, read once at start. */
  tokensFile: z.string().min(1).optional(),
});
export type AuthConfig = z.output<typeof authConfigSchema>;

export const tlsConfigSchema = z.object({
  /** PEM certificate chain the server presents. */
  certFile: z.string().min(1),
  /** PEM private key of that certificate. */
  keyFile: z.string().min(1),
  /** PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS). */
  clientCaFile: z.string().min(1).optional(),
});
export type TlsConfig = z.output<typeof tlsConfigSchema>;

/** An authenticated caller. */
export interface Identity {
  readonly name: string;
  readonly roles: readonly string[];
}

interface Known {
  digest: Buffer;
  identity: Identity;
}

const digest = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest();

export class TokenAuth {
  private readonly known: readonly Known[];

  /** Entries whose secrets are already resolved; fromConfig is the usual way in. */
  constructor(entries: readonly { identity: string; roles: readonly string[]; token: string }[]) {
    const seen = new Set<string>();
    this.known = entries.map((e, i) => {
      const key = `server.auth.tokens[${i}]`;
      if (e.token.length < MIN_TOKEN_LENGTH || e.token.length > MAX_TOKEN_LENGTH) {
        throw new ConfigError(
          key,
          `the token of "${e.identity}" must have ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} characters`,
        );
      }
      const d = digest(e.token);
      const hex = d.toString("hex");
      if (seen.has(hex)) throw new ConfigError(key, `"${e.identity}" reuses a token another entry has`);
      seen.add(hex);
      return { digest: d, identity: Object.freeze({ name: e.identity, roles: Object.freeze([...e.roles]) }) };
    });
  }

  /** Reads the entries' secrets (token, tokenEnv or tokenFile) and tokensFile's entries. */
  static fromConfig(
    config: AuthConfig,
    env: Readonly<Record<string, string | undefined>> = process.env,
  ): TokenAuth {
    const entries = config.tokens.map((e, i) => resolveEntry(e, `server.auth.tokens[${i}]`, env));
    if (config.tokensFile !== undefined) {
      const key = "server.auth.tokensFile";
      const parsed = z.array(tokenEntrySchema).safeParse(parseYaml(readSecret(config.tokensFile, key)));
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new ConfigError(key, `${config.tokensFile}: [${issue?.path.join(".")}] ${issue?.message}`);
      }
      parsed.data.forEach((e, i) => {
        entries.push(resolveEntry(e, `${key}[${i}]`, env));
      });
    }
    return new TokenAuth(entries);
  }

  /** Whether any token is known; without one every call that needs auth is refused. */
  get configured(): boolean {
    return this.known.length > 0;
  }

  /** The caller the metadata's bearer token names; throws UnauthenticatedError otherwise. */
  authenticate(metadata: Metadata): Identity {
    const values = metadata.get(AUTHORIZATION_KEY);
    if (values.length === 0) {
      throw new UnauthenticatedError(`this call needs "${AUTHORIZATION_KEY}: Bearer <token>" metadata`);
    }
    const [value] = values;
    if (values.length > 1 || typeof value !== "string") {
      throw new UnauthenticatedError(
        `malformed ${AUTHORIZATION_KEY} metadata: expected one "Bearer <token>"`,
      );
    }
    const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(value);
    const token = match?.[1];
    if (token === undefined || token.length > MAX_TOKEN_LENGTH) {
      throw new UnauthenticatedError(`malformed ${AUTHORIZATION_KEY} metadata: expected "Bearer <token>"`);
    }
    if (!this.configured) {
      throw new UnauthenticatedError(
        "this server has no tokens configured (server.auth), so it accepts none",
      );
    }
    const d = digest(token);
    let found: Identity | undefined;
    // Every entry is compared, whatever matched first: the time taken does not depend on which one did.
    for (const k of this.known) {
      if (timingSafeEqual(k.digest, d)) found = k.identity;
    }
    if (found === undefined) throw new UnauthenticatedError("unknown token");
    return found;
  }

  /** The caller, who must hold `role`; throws UnauthenticatedError or PermissionDeniedError. */
  require(metadata: Metadata, role: string): Identity {
    const who = this.authenticate(metadata);
    if (!who.roles.includes(role)) {
      throw new PermissionDeniedError(`"${who.name}" does not have the role "${role}" this call needs`);
    }
    return who;
  }
}

function resolveEntry(
  e: TokenEntry,
  key: string,
  env: Readonly<Record<string, string | undefined>>,
): { identity: string; roles: string[]; token: string } {
  const sources = [e.token, e.tokenEnv, e.tokenFile].filter((s) => s !== undefined).length;
  if (sources !== 1) {
    throw new ConfigError(key, `"${e.identity}" needs exactly one of token, tokenEnv, tokenFile`);
  }
  let token: string;
  if (e.token !== undefined) token = e.token;
  else if (e.tokenEnv !== undefined) {
    const value = env[e.tokenEnv];
    if (value === undefined || value.trim() === "") {
      throw new ConfigError(`${key}.tokenEnv`, `the variable ${e.tokenEnv} is not set`);
    }
    token = value.trim();
  } else token = readSecret(e.tokenFile as string, `${key}.tokenFile`).trim();
  return { identity: e.identity, roles: e.roles, token };
}

function readSecret(path: string, key: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(key, `cannot read ${path} (${code ?? String(err)})`, { cause: err });
  }
}

/** The server's transport: TLS from PEM files (mutual when clientCaFile is set), or insecure without. */
export function serverCredentials(tls: TlsConfig | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  const cert = Buffer.from(readSecret(tls.certFile, "server.tls.certFile"));
  const key = Buffer.from(readSecret(tls.keyFile, "server.tls.keyFile"));
  const ca =
    tls.clientCaFile === undefined
      ? null
      : Buffer.from(readSecret(tls.clientCaFile, "server.tls.clientCaFile"));
  try {
    return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
  } catch (err) {
    throw new ConfigError("server.tls", `unusable certificate or key: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Client side: metadata carrying `authorization: Bearer <token>`. */
export function bearerMetadata(token: string, metadata: Metadata = new Metadata()): Metadata {
  metadata.set(AUTHORIZATION_KEY, `Bearer ${token}`);
  return metadata;
}

/** A fresh random token: 32 bytes, base64url. */
export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}
