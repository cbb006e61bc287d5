// The speculator registry on the bus: weights as blobs in the object store, announced by a signed
// SpeculatorManifest under `<model>.<role>` in the speculator KV bucket. The blob goes in first, so a
// node that sees a manifest can always fetch what it names.
//
// An entry's value is JSON: `{"manifest": <SpeculatorManifest, ts-proto JSON>, "signature": {...}}`
// (signing.ts; no signature when the publisher has no key). A value that is only a manifest (what earlier
// versions wrote) reads as unsigned. A registry opened with a verifier (every node's) refuses entries
// that do not decode, are unsigned or badly signed, or name another model or slot: the watch reports
// each refusal and goes on, and at start yields the newest valid entry of each slot from the bucket's
// history, so one bad write can neither stop hot-swap nor leave a restarted node without a speculator.
import { createHash } from "node:crypto";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import { type JetStreamClient, type KV, type KvEntry, KvWatchInclude, type ObjectStore } from "nats";
import {
  BusNotFoundError,
  DigestMismatchError,
  InvalidMessageError,
  ManifestRefusedError,
} from "./errors.js";
import {
  SPECULATOR_BUCKET,
  type SpeculatorSlot,
  slotOfSpeculatorKey,
  speculatorKey,
  speculatorKeyFilter,
  WEIGHTS_BUCKET,
  weightsObjectName,
} from "./names.js";
import { AsyncQueue } from "./queue.js";
import type { ManifestSignature, ManifestSigner, ManifestVerifier } from "./signing.js";

/**
 * One change to a model's speculator slots: a manifest to load, a cleared slot (no manifest, no
 * refusal), or an entry refused (`refused` set, `manifest` undefined; the slot keeps what it had).
 */
export interface ManifestUpdate {
  slot: SpeculatorSlot;
  /** The manifest now in the slot; undefined when the slot was cleared or the entry refused. */
  manifest: SpeculatorManifest | undefined;
  /** KV revision of the change. */
  revision: number;
  /** Why the entry at this revision was not taken. */
  refused?: ManifestRefusedError;
}

export interface ManifestWatch extends AsyncIterable<ManifestUpdate> {
  /** Ends the iteration. */
  stop(): void;
}

export interface PublishSpeculatorInput {
  /** model_id, version_id, role, architecture, config, tensors...; sha256, size and object name are filled in. */
  manifest: SpeculatorManifest;
  /** The safetensors file. */
  blob: Uint8Array;
}

export interface RegistryOptions {
  /** Signs what publish() announces (the trainer's key). */
  signer?: ManifestSigner;
  /** Checks what current() and watch() return; without one, signatures are not checked (tools, tests). */
  verifier?: ManifestVerifier;
}

/** The registry's value for a manifest. */
interface Envelope {
  manifest: unknown;
  signature?: ManifestSignature;
}

/** The object store's digest of a blob ("SHA-256=" and the padded base64url of its sha256). */
function objectDigest(data: Uint8Array): string {
  const b64 = createHash("sha256").update(data).digest("base64");
  return `SHA-256=${b64.replace(/\+/g, "-").replace(/\//g, "_")}`;
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function slotOfRole(role: SpeculatorRole): SpeculatorSlot {
  if (role === SpeculatorRole.SPECULATOR_ROLE_LIVE) return "live";
  if (role === SpeculatorRole.SPECULATOR_ROLE_CANARY) return "canary";
  throw new InvalidMessageError("role", "must be live or canary");
}

export class SpeculatorRegistry {
  private constructor(
    private readonly kv: KV,
    private readonly store: ObjectStore,
    private readonly options: RegistryOptions,
  ) {}

  /** Binds to the provisioned buckets (see provisionBus). */
  static async open(js: JetStreamClient, options: RegistryOptions = {}): Promise<SpeculatorRegistry> {
    try {
      const kv = await js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
      const store = await js.views.os(WEIGHTS_BUCKET);
      return new SpeculatorRegistry(kv, store, options);
    } catch (err) {
      throw new BusNotFoundError(`bus: speculator registry buckets are missing; provision the bus first`, {
        cause: err,
      });
    }
  }

  /** Stores the blob, then announces its manifest in the model's slot; returns the manifest announced. */
  async publish(input: PublishSpeculatorInput): Promise<SpeculatorManifest> {
    const { manifest, blob } = input;
    if (manifest.modelId === "") throw new InvalidMessageError("model_id", "is required");
    if (manifest.versionId === "") throw new InvalidMessageError("version_id", "is required");
    const slot = slotOfRole(manifest.role);
    const digest = sha256Hex(blob);
    if (manifest.sha256 !== "" && manifest.sha256 !== digest) {
      throw new DigestMismatchError(
        `speculator ${manifest.versionId}: manifest says sha256 ${manifest.sha256}, the blob is ${digest}`,
      );
    }
    const objectName = weightsObjectName(manifest.modelId, manifest.versionId);
    // A blob already stored whole (a re-announce after a trainer restart, a promotion) is not stored again:
    // replacing an object while a node reads it gives that node a corrupt download.
    const stored = await this.store.info(objectName);
    const sameBlob =
      stored !== null &&
      !stored.deleted &&
      stored.size === blob.length &&
      stored.digest === objectDigest(blob);
    if (!sameBlob) {
      await this.store.putBlob(
        { name: objectName, description: `${manifest.modelId} ${manifest.versionId}` },
        blob,
      );
    }
    const announced: SpeculatorManifest = {
      ...manifest,
      sha256: digest,
      sizeBytes: blob.length,
      objectName,
      publishedAt: manifest.publishedAt ?? new Date(),
    };
    const envelope: Envelope = { manifest: SpeculatorManifest.toJSON(announced) };
    if (this.options.signer !== undefined) envelope.signature = this.options.signer.sign(announced);
    await this.kv.put(speculatorKey(manifest.modelId, slot), JSON.stringify(envelope));
    return announced;
  }

  /** Empties a model's slot (a retired canary): watchers see the slot cleared, restarted nodes load nothing. */
  async clear(modelId: string, slot: SpeculatorSlot): Promise<void> {
    await this.kv.delete(speculatorKey(modelId, slot));
  }

  /**
   * The manifest in a model's slot, or undefined when the slot is empty; ManifestRefusedError when the
   * entry there is not valid (see the module comment).
   */
  async current(modelId: string, slot: SpeculatorSlot): Promise<SpeculatorManifest | undefined> {
    const entry = await this.kv.get(speculatorKey(modelId, slot));
    if (entry === null || entry.operation !== "PUT") return undefined;
    return this.check(modelId, slot, entry);
  }

  /** The blob a manifest names, checked against its size and sha256 (DigestMismatchError otherwise). */
  async fetchBlob(manifest: SpeculatorManifest): Promise<Uint8Array> {
    let blob: Uint8Array | null;
    try {
      blob = await this.store.getBlob(manifest.objectName);
    } catch (err) {
      throw new DigestMismatchError(
        `speculator ${manifest.versionId}: blob ${manifest.objectName} is corrupt`,
        {
          cause: err,
        },
      );
    }
    if (blob === null) {
      throw new BusNotFoundError(
        `speculator ${manifest.versionId}: no blob ${manifest.objectName} in the store`,
      );
    }
    const digest = sha256Hex(blob);
    if (digest !== manifest.sha256 || blob.length !== manifest.sizeBytes) {
      throw new DigestMismatchError(
        `speculator ${manifest.versionId}: blob ${manifest.objectName} has sha256 ${digest} and ${blob.length} bytes, ` +
          `the manifest says ${manifest.sha256} and ${manifest.sizeBytes} bytes`,
      );
    }
    return blob;
  }

  /**
   * Updates of a model's slots until stop(): first, per slot, the refusals newer than its newest valid
   * entry and then that entry (from the bucket's history); then every change as it comes, refused
   * entries reported and skipped.
   */
  async watch(modelId: string): Promise<ManifestWatch> {
    const queue = new AsyncQueue<ManifestUpdate>();
    const initial = new Map<SpeculatorSlot, { best?: ManifestUpdate; refused: ManifestUpdate[] }>();
    let initialised = false;
    const toUpdate = (entry: KvEntry, slot: SpeculatorSlot): ManifestUpdate => {
      if (entry.operation !== "PUT") return { slot, manifest: undefined, revision: entry.revision };
      try {
        return { slot, manifest: this.check(modelId, slot, entry), revision: entry.revision };
      } catch (err) {
        const refused =
          err instanceof ManifestRefusedError
            ? err
            : new ManifestRefusedError("malformed", String(err), { cause: err });
        return { slot, manifest: undefined, revision: entry.revision, refused };
      }
    };
    const flushInitial = () => {
      initialised = true;
      for (const { best, refused } of initial.values()) {
        for (const r of refused) queue.push(r);
        if (best?.manifest !== undefined) queue.push(best);
      }
      initial.clear();
    };
    const it = await this.kv.watch({
      key: speculatorKeyFilter(modelId),
      include: KvWatchInclude.AllHistory,
      initializedFn: flushInitial,
    });
    void (async () => {
      for await (const entry of it) {
        const slot = slotOfSpeculatorKey(entry.key);
        if (slot === undefined) continue;
        const update = toUpdate(entry, slot);
        if (initialised) {
          queue.push(update);
          continue;
        }
        // History, oldest first: a valid entry or a clear supersedes what came before it.
        if (update.refused === undefined) initial.set(slot, { best: update, refused: [] });
        else {
          const state = initial.get(slot) ?? { refused: [] };
          state.refused.push(update);
          initial.set(slot, state);
        }
      }
    })().then(
      () => queue.end(),
      (err: unknown) => queue.end(err),
    );
    return {
      [Symbol.asyncIterator]: () => queue[Symbol.asyncIterator](),
      stop: () => {
        it.stop();
        queue.end();
      },
    };
  }

  /** The manifest of a PUT entry, checked (module comment); ManifestRefusedError otherwise. */
  private check(modelId: string, slot: SpeculatorSlot, entry: KvEntry): SpeculatorManifest {
    const { manifest, signature } = decodeEntry(entry);
    const where = `speculator manifest ${entry.key} (revision ${entry.revision})`;
    if (manifest.modelId !== modelId) {
      throw new ManifestRefusedError("mismatch", `${where} is for model "${manifest.modelId}"`);
    }
    if (manifest.role === SpeculatorRole.SPECULATOR_ROLE_UNSPECIFIED || slotOfRole(manifest.role) !== slot) {
      throw new ManifestRefusedError("mismatch", `${where} has role ${manifest.role}, not ${slot}`);
    }
    if (manifest.versionId === "" || !/^[0-9a-f]{64}$/.test(manifest.sha256) || manifest.objectName === "") {
      throw new ManifestRefusedError("malformed", `${where} lacks a version, a sha256 or an object name`);
    }
    this.options.verifier?.verify(manifest, signature);
    return manifest;
  }
}

function decodeEntry(entry: KvEntry): { manifest: SpeculatorManifest; signature?: ManifestSignature } {
  let value: unknown;
  try {
    value = entry.json();
  } catch (err) {
    throw new ManifestRefusedError("malformed", `speculator manifest ${entry.key} is not JSON`, {
      cause: err,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestRefusedError("malformed", `speculator manifest ${entry.key} is not a JSON object`);
  }
  const envelope = value as Partial<Envelope>;
  try {
    if (envelope.manifest === undefined) return { manifest: SpeculatorManifest.fromJSON(value) };
    const signature = envelope.signature;
    const validSignature =
      typeof signature === "object" &&
      signature !== null &&
      typeof signature.keyId === "string" &&
      typeof signature.value === "string";
    return {
      manifest: SpeculatorManifest.fromJSON(envelope.manifest),
      ...(validSignature ? { signature } : {}),
    };
  } catch (err) {
    throw new ManifestRefusedError("malformed", `speculator manifest ${entry.key} is not a manifest`, {
      cause: err,
    });
  }
}
