// Signed speculator manifests. The trainer signs each manifest it announces with an Ed25519 key
// (node:crypto); nodes verify against the public keys they trust and refuse anything else, so a stolen
// bus credential alone cannot make a node run weights the trainer did not publish (the manifest names
// the blob's sha256 and size, which the registry checks).
//
// What is signed, byte for byte:
//   MANIFEST_SIGNATURE_CONTEXT (ASCII "specloop/speculator-manifest/v1" and a NUL byte), then
//   the protobuf encoding of the SpeculatorManifest with its `config` map left out (fields in field-number
//   order, default values omitted, as proto3 encoders write them), then
//   one `config` entry (field 5, a ConfigEntry message) per key, keys in ascending order of their UTF-8
//   bytes.
// The map is appended in a fixed order because protobuf leaves map order to the encoder; the context
// prefix keeps a manifest signature from being valid for any other message signed with the same key.
// A node decodes the manifest from the registry and re-encodes it the same way, so a field the node's
// proto does not know makes the signature fail: upgrade nodes before the trainer when the manifest grows.
//
// Keys travel as text, `ed25519:<base64url of the 32 raw public key bytes>`; a key's id is the first 16
// hex digits of the sha256 of those bytes. The private key is a PKCS#8 PEM file (what writeSigningKey
// makes, or `openssl genpkey -algorithm ed25519`).
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SpeculatorManifest, SpeculatorManifest_ConfigEntry } from "@specloop/proto";
import type { ManifestSigningConfig } from "./config.js";
import { BusCredentialsError, ManifestRefusedError } from "./errors.js";

export const MANIFEST_SIGNATURE_CONTEXT = "specloop/speculator-manifest/v1\0";
const KEY_PREFIX = "ed25519:";

/** A manifest's signature, as it travels beside the manifest in the registry. */
export interface ManifestSignature {
  /** Id of the key that signed (publicKeyId). */
  keyId: string;
  algorithm: "ed25519";
  /** The 64-byte signature, base64. */
  value: string;
}

/** The bytes a manifest's signature covers (see the module comment). */
export function manifestSigningBytes(manifest: SpeculatorManifest): Uint8Array {
  const writer = SpeculatorManifest.encode({ ...manifest, config: {} });
  const utf8 = (s: string) => Buffer.from(s, "utf8");
  const keys = Object.keys(manifest.config).sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
  for (const key of keys) {
    SpeculatorManifest_ConfigEntry.encode(
      { key, value: manifest.config[key] ?? "" },
      writer.uint32(42).fork(),
    ).join();
  }
  const body = writer.finish();
  const context = utf8(MANIFEST_SIGNATURE_CONTEXT);
  const out = new Uint8Array(context.length + body.length);
  out.set(context, 0);
  out.set(body, context.length);
  return out;
}

/** `ed25519:<base64url>` of a public key. */
export function publicKeyText(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  if (jwk.crv !== "Ed25519" || typeof jwk.x !== "string") throw new Error("not an Ed25519 public key");
  return `${KEY_PREFIX}${jwk.x}`;
}

/** The id of a public key (text form): the first 16 hex digits of the sha256 of its raw bytes. */
export function publicKeyId(text: string): string {
  return createHash("sha256")
    .update(Buffer.from(rawOf(text), "base64url"))
    .digest("hex")
    .slice(0, 16);
}

function rawOf(text: string): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith(KEY_PREFIX)) throw new Error(`"${trimmed}" is not ed25519:<base64url>`);
  const raw = trimmed.slice(KEY_PREFIX.length);
  if (Buffer.from(raw, "base64url").length !== 32) throw new Error(`"${trimmed}" does not hold 32 key bytes`);
  return raw;
}

function publicKeyOf(text: string): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: rawOf(text) }, format: "jwk" });
}

/** Signs manifests with one private key (the trainer's). */
export class ManifestSigner {
  readonly publicKey: string;
  readonly keyId: string;

  constructor(private readonly privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== "ed25519") throw new Error("the signing key is not Ed25519");
    this.publicKey = publicKeyText(createPublicKey(privateKey));
    this.keyId = publicKeyId(this.publicKey);
  }

  /** The signer of a PKCS#8 PEM file. */
  static fromFile(file: string): ManifestSigner {
    try {
      return new ManifestSigner(createPrivateKey(readFileSync(file)));
    } catch (err) {
      throw new BusCredentialsError(file, `not an Ed25519 private key: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** The signer bus.manifests.signing_key_file names, or undefined when it is empty. */
  static fromConfig(config: Pick<ManifestSigningConfig, "signingKeyFile">): ManifestSigner | undefined {
    return config.signingKeyFile === "" ? undefined : ManifestSigner.fromFile(config.signingKeyFile);
  }

  sign(manifest: SpeculatorManifest): ManifestSignature {
    const value = sign(null, manifestSigningBytes(manifest), this.privateKey).toString("base64");
    return { keyId: this.keyId, algorithm: "ed25519", value };
  }
}

/** Checks manifests against the public keys a node trusts. With no key, every manifest is refused. */
export class ManifestVerifier {
  private readonly keys = new Map<string, KeyObject>();

  /** `keys`: `ed25519:<base64url>` texts; a malformed one throws, naming it. */
  constructor(keys: readonly string[]) {
    for (const text of keys) this.keys.set(publicKeyId(text), publicKeyOf(text));
  }

  /** Trusted keys from bus.manifests (the list and the file's lines; `#` starts a comment). */
  static fromConfig(
    config: Pick<ManifestSigningConfig, "trustedKeys" | "trustedKeysFile">,
  ): ManifestVerifier {
    const keys = [...config.trustedKeys];
    if (config.trustedKeysFile !== "") {
      let text: string;
      try {
        text = readFileSync(config.trustedKeysFile, "utf8");
      } catch (err) {
        throw new BusCredentialsError(config.trustedKeysFile, `cannot read trusted keys: ${String(err)}`, {
          cause: err,
        });
      }
      for (const line of text.split("\n")) {
        const key = line.replace(/#.*/, "").trim();
        if (key !== "") keys.push(key);
      }
    }
    return new ManifestVerifier(keys);
  }

  /** Ids of the trusted keys. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  /** Throws ManifestRefusedError unless `signature` is a valid signature of `manifest` by a trusted key. */
  verify(manifest: SpeculatorManifest, signature: ManifestSignature | undefined): void {
    const what = `speculator manifest ${manifest.versionId || "(no version)"}`;
    if (signature === undefined) throw new ManifestRefusedError("unsigned", `${what} is not signed`);
    const key = this.keys.get(signature.keyId);
    if (key === undefined) {
      throw new ManifestRefusedError(
        "unknown_key",
        `${what} is signed by key ${signature.keyId}, which this node does not trust`,
      );
    }
    const value = Buffer.from(signature.value, "base64");
    if (signature.algorithm !== "ed25519" || value.length !== 64) {
      throw new ManifestRefusedError("bad_signature", `${what}: the signature is not an Ed25519 signature`);
    }
    if (!verify(null, manifestSigningBytes(manifest), key, value)) {
      throw new ManifestRefusedError("bad_signature", `${what}: the signature does not match the manifest`);
    }
  }
}

export interface SigningKeyFiles {
  /** PKCS#8 PEM private key, mode 0600 (the trainer's bus.manifests.signing_key_file). */
  keyFile: string;
  /** One line, the public key text (a node's bus.manifests.trusted_keys_file). */
  publicKeyFile: string;
  publicKey: string;
}

/** Makes an Ed25519 key pair under `dir` (`<name>.key`, `<name>.pub`), or keeps the one already there. */
export function writeSigningKey(dir: string, name = "manifest-signing"): SigningKeyFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, `${name}.key`);
  const publicKeyFile = join(dir, `${name}.pub`);
  if (!existsSync(keyFile)) {
    const { privateKey } = generateKeyPairSync("ed25519");
    writeFileSync(keyFile, privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    chmodSync(keyFile, 0o600);
  }
  const publicKey = ManifestSigner.fromFile(keyFile).publicKey;
  writeFileSync(publicKeyFile, `${publicKey}\n`);
  return { keyFile, publicKeyFile, publicKey };
}
