// The speculator registry on the bus: weights as blobs in the object store, announced by a
// SpeculatorManifest (ts-proto JSON) under `<model>.<role>` in the speculator KV bucket. The blob goes
// in first, so a node that sees a manifest can always fetch what it names.
import { createHash } from "node:crypto";
import { SpeculatorManifest, SpeculatorRole } from "@specloop/proto";
import type { JetStreamClient, KV, KvEntry, ObjectStore, QueuedIterator } from "nats";
import { BusNotFoundError, DigestMismatchError, InvalidMessageError } from "./errors.js";
import {
  SPECULATOR_BUCKET,
  type SpeculatorSlot,
  slotOfSpeculatorKey,
  speculatorKey,
  speculatorKeyFilter,
  WEIGHTS_BUCKET,
  weightsObjectName,
} from "./names.js";

/** One change to a model's speculator slots. */
export interface ManifestUpdate {
  slot: SpeculatorSlot;
  /** The manifest now in the slot; undefined when the slot was cleared. */
  manifest: SpeculatorManifest | undefined;
  /** KV revision of the change. */
  revision: number;
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
  ) {}

  /** Binds to the provisioned buckets (see provisionBus). */
  static async open(js: JetStreamClient): Promise<SpeculatorRegistry> {
    try {
      const kv = await js.views.kv(SPECULATOR_BUCKET, { bindOnly: true });
      const store = await js.views.os(WEIGHTS_BUCKET);
      return new SpeculatorRegistry(kv, store);
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
    await this.store.putBlob(
      { name: objectName, description: `${manifest.modelId} ${manifest.versionId}` },
      blob,
    );
    const announced: SpeculatorManifest = {
      ...manifest,
      sha256: digest,
      sizeBytes: blob.length,
      objectName,
      publishedAt: manifest.publishedAt ?? new Date(),
    };
    await this.kv.put(
      speculatorKey(manifest.modelId, slot),
      JSON.stringify(SpeculatorManifest.toJSON(announced)),
    );
    return announced;
  }

  /** The manifest in a model's slot, or undefined when the slot is empty. */
  async current(modelId: string, slot: SpeculatorSlot): Promise<SpeculatorManifest | undefined> {
    const entry = await this.kv.get(speculatorKey(modelId, slot));
    return entry === null ? undefined : decodeEntry(entry);
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

  /** Updates of a model's slots: the current values first, then every change until stop(). */
  async watch(modelId: string): Promise<ManifestWatch> {
    const it: QueuedIterator<KvEntry> = await this.kv.watch({ key: speculatorKeyFilter(modelId) });
    async function* updates(): AsyncGenerator<ManifestUpdate> {
      for await (const entry of it) {
        const slot = slotOfSpeculatorKey(entry.key);
        if (slot === undefined) continue;
        const manifest = entry.operation === "PUT" ? decodeEntry(entry) : undefined;
        yield { slot, manifest, revision: entry.revision };
      }
    }
    const gen = updates();
    return {
      [Symbol.asyncIterator]: () => gen,
      stop: () => it.stop(),
    };
  }
}

function decodeEntry(entry: KvEntry): SpeculatorManifest | undefined {
  if (entry.operation !== "PUT") return undefined;
  try {
    return SpeculatorManifest.fromJSON(entry.json());
  } catch (err) {
    throw new DigestMismatchError(`speculator manifest ${entry.key} is not valid JSON`, { cause: err });
  }
}
