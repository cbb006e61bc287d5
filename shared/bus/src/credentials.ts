// NATS credentials for the bus's roles (permissions.ts): one nkey user per role. writeBusCredentials
// makes, under a directory, one seed file per role (`<role>.nk`, mode 0600: the role's credential, what
// `bus.credentials_file` points at) and the server's `authorization` block (`auth.conf`, 0600) listing
// each user's public key with its permissions. A seed never leaves its file; the server only learns
// public keys. Existing seeds are kept, so a second call (every `npm start`) changes nothing but the
// permissions text.
//
// Rotation: `rotate: ["node"]` moves node.nk to node.nk.previous and writes a fresh node.nk; the server
// config then accepts both keys (the same permissions) until the previous file is deleted and the config
// written again. So: rotate, reload the server (SIGHUP), roll the clients onto the new file, delete
// `<role>.nk.previous`, write again, reload again.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "nats";
import { BusCredentialsError } from "./errors.js";
import { BUS_ROLES, type BusRole, rolePermissions } from "./permissions.js";

export const SERVER_AUTH_FILE = "auth.conf";

export interface BusCredentialsOptions {
  /** Directory of the files; created (mode 0700) when missing. */
  dir: string;
  /** Roles to make a user for; every role by default. */
  roles?: readonly BusRole[];
  /** Roles whose seed is replaced (the old one stays valid as `<role>.nk.previous`, see above). */
  rotate?: readonly BusRole[];
}

export interface BusCredentials {
  readonly dir: string;
  /** The server's `authorization { users = [...] }` block, as written to serverConfigFile. */
  readonly serverConfig: string;
  readonly serverConfigFile: string;
  /** The role's seed file (a service's `bus.credentials_file`). */
  credentialsFile(role: BusRole): string;
  /** The role's user public key (what the server config lists). */
  publicKey(role: BusRole): string;
}

/** The seed file of a role under `dir`. */
export function credentialsFileOf(dir: string, role: BusRole): string {
  return join(dir, `${role}.nk`);
}

/** Makes (or keeps) every role's seed and writes the server's authorization block; see the module comment. */
export function writeBusCredentials(options: BusCredentialsOptions): BusCredentials {
  const { dir } = options;
  const roles = options.roles ?? BUS_ROLES;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keys = new Map<BusRole, string>();
  const users: string[] = [];
  for (const role of roles) {
    const file = credentialsFileOf(dir, role);
    if (options.rotate?.includes(role) && existsSync(file)) renameSync(file, `${file}.previous`);
    if (!existsSync(file)) writePrivate(file, `${new TextDecoder().decode(nkeys.createUser().getSeed())}\n`);
    const current = publicKeyOfSeedFile(file);
    keys.set(role, current);
    const all = [current];
    if (existsSync(`${file}.previous`)) all.push(publicKeyOfSeedFile(`${file}.previous`));
    for (const key of all) users.push(userEntry(role, key));
  }
  const serverConfig = [
    "# Written by @specloop/bus writeBusCredentials: one nkey user per role, with its permissions.",
    "authorization {",
    "  users = [",
    ...users,
    "  ]",
    "}",
    "",
  ].join("\n");
  const serverConfigFile = join(dir, SERVER_AUTH_FILE);
  writePrivate(serverConfigFile, serverConfig);
  return {
    dir,
    serverConfig,
    serverConfigFile,
    credentialsFile: (role) => credentialsFileOf(dir, role),
    publicKey(role) {
      const key = keys.get(role);
      if (key === undefined) throw new BusCredentialsError(dir, `no ${role} user was written here`);
      return key;
    },
  };
}

/** The user public key of an nkey seed file (or of the seed in a `.creds` file). */
export function publicKeyOfSeedFile(file: string): string {
  return nkeys.fromSeed(seedOf(file, readFileSync(file, "utf8"))).getPublicKey();
}

/** The nkey seed in a seed file's text or in a `.creds` file's text. */
export function seedOf(file: string, text: string): Uint8Array {
  const match = /\bSU[A-Z2-7]{56}\b/.exec(text);
  if (match === null) throw new BusCredentialsError(file, "holds no nkey user seed (SU...)");
  return new TextEncoder().encode(match[0]);
}

function userEntry(role: BusRole, publicKey: string): string {
  const p = rolePermissions(role, publicKey);
  // Subjects are JSON strings: NATS's config syntax would read an unquoted `$JS...` as a variable.
  const list = (subjects: string[]) => `[${subjects.map((s) => JSON.stringify(s)).join(", ")}]`;
  return [
    `    # ${role}`,
    `    { nkey: ${JSON.stringify(publicKey)}, permissions: {`,
    `      publish: { allow: ${list(p.publish)} }`,
    `      subscribe: { allow: ${list(p.subscribe)} }`,
    "    } }",
  ].join("\n");
}

function writePrivate(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  // writeFileSync keeps an existing file's mode: make sure it is 0600 whatever was there.
  chmodSync(file, 0o600);
}
