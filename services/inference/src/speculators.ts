// Hot-swap of the learned speculator. The node watches its model's speculator slots (live and canary) in
// the registry KV; for each new manifest it downloads the blob from the object store in the background
// (sha256 and size checked by the registry), validates it against the target (architecture, shapes,
// dtypes: validateSpeculatorBlob), uploads the head beside the current one and switches between two
// decoding turns (Scheduler.runExclusive), so no step ever sees half a swap. A blob that fails any check
// is refused, counted and logged, and the node keeps serving what it had. So is a registry entry the
// registry refuses before any download (malformed, unsigned or badly signed, for another model or slot:
// shared/bus/src/registry.ts); the watch goes on, and at start it offers each slot's newest valid entry.
//
// Canary: a configured share of eagle requests (the manifest's canary_share) is routed to the canary head;
// the routing is per request, decided at admission, and traces and stats carry the version that drafted.
import type { ManifestUpdate, SpeculatorRegistry, SpeculatorSlot } from "@specloop/bus";
import { EagleHead, type Model, Rng } from "@specloop/engine";
import type { SpeculatorManifest } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import {
  type Drafter,
  type DraftRequest,
  EagleDrafter,
  type EagleDrafterOptions,
  type Proposal,
  type SequenceView,
  type TargetFeatures,
} from "@specloop/speculation";
import type { Counter } from "prom-client";
import type { NodeMetrics } from "./metrics.js";

export type SpeculatorRoleName = SpeculatorSlot;

/**
 * The `eagle` drafter the decoder sees: routes each sequence to the live or the canary head's drafter.
 * Feature layers are the union of both heads' (each gets its own columns in observe()).
 */
export class RoutedEagleDrafter implements Drafter {
  readonly kind = "eagle" as const;
  private readonly drafters = new Map<SpeculatorRoleName, EagleDrafter>();
  private readonly roles = new Map<string, SpeculatorRoleName>();
  readonly manifests = new Map<SpeculatorRoleName, SpeculatorManifest>();
  private canaryShare = 0;
  private readonly rng = new Rng(0x5eed);

  constructor(private readonly options: EagleDrafterOptions) {}

  get live(): EagleDrafter | undefined {
    return this.drafters.get("live");
  }

  get version(): string {
    return this.live?.version ?? "";
  }

  versionFor(seqId: string): string {
    return this.versionOfRole(this.roles.get(seqId) ?? "live");
  }

  /** The version of the head in a slot (a cleared canary's head still drafts for its sequences). */
  versionOfRole(role: SpeculatorRoleName): string {
    return (this.drafters.get(role) ?? this.live)?.version ?? "";
  }

  get featureLayers(): readonly number[] {
    const layers = new Set<number>();
    for (const d of this.drafters.values()) for (const l of d.featureLayers) layers.add(l);
    return [...layers].sort((a, b) => a - b);
  }

  /** Picks the role of a new eagle request: canary for the configured share when a canary is loaded. */
  route(seqId: string): SpeculatorRoleName {
    const role: SpeculatorRoleName =
      this.drafters.has("canary") && this.rng.next() < this.canaryShare ? "canary" : "live";
    this.roles.set(seqId, role);
    return role;
  }

  /** Installs `head` in `role` (a new drafter, or a swap at the next propose). Call between steps. */
  install(role: SpeculatorRoleName, head: EagleHead, manifest: SpeculatorManifest): void {
    const d = this.drafters.get(role);
    if (d === undefined) this.drafters.set(role, new EagleDrafter(head, this.options));
    else d.swap(head);
    this.manifests.set(role, manifest);
    if (role === "canary") this.canaryShare = Math.min(1, Math.max(0, manifest.canaryShare));
  }

  /** The slot was cleared: new requests stop going there; sequences already on it finish on it. */
  clear(role: SpeculatorRoleName): void {
    this.manifests.delete(role);
    if (role === "canary") this.canaryShare = 0;
  }

  async propose(requests: readonly DraftRequest[]): Promise<Proposal[]> {
    const out: Proposal[] = new Array(requests.length);
    const byRole = new Map<EagleDrafter, number[]>();
    requests.forEach((r, i) => {
      const d = this.drafterOf(r.seq.id);
      const list = byRole.get(d) ?? [];
      list.push(i);
      byRole.set(d, list);
    });
    for (const [d, idx] of byRole) {
      const got = await d.propose(idx.map((i) => requests[i] as DraftRequest));
      idx.forEach((i, j) => {
        out[i] = got[j] as Proposal;
      });
    }
    return out;
  }

  observe(seq: SequenceView, features?: TargetFeatures): void {
    const d = this.drafterOf(seq.id);
    d.observe(seq, features === undefined ? undefined : columnsFor(features, d.featureLayers));
  }

  release(seqId: string): void {
    for (const d of this.drafters.values()) d.release(seqId);
    this.roles.delete(seqId);
  }

  rest(seqId: string): void {
    this.drafterOf(seqId).rest(seqId);
  }

  roleOf(seqId: string): SpeculatorRoleName {
    return this.roles.get(seqId) ?? "live";
  }

  private drafterOf(seqId: string): EagleDrafter {
    const d = this.drafters.get(this.roles.get(seqId) ?? "live") ?? this.live;
    if (d === undefined) throw new Error("eagle drafter: no speculator loaded");
    return d;
  }
}

/** The columns of `layers` out of features laid out for a superset of layers. */
function columnsFor(f: TargetFeatures, layers: readonly number[]): TargetFeatures | undefined {
  if (layers.length === f.layers.length && layers.every((l, i) => l === f.layers[i])) return f;
  if (!layers.every((l) => f.layers.includes(l))) return undefined;
  const hidden = f.data.length / (f.count * f.layers.length);
  const data = new Float32Array(f.count * layers.length * hidden);
  for (let r = 0; r < f.count; r++) {
    layers.forEach((l, j) => {
      const from = (r * f.layers.length + f.layers.indexOf(l)) * hidden;
      data.set(f.data.subarray(from, from + hidden), (r * layers.length + j) * hidden);
    });
  }
  return { layers, firstPosition: f.firstPosition, count: f.count, data };
}

export interface SwapperOptions {
  registry: SpeculatorRegistry;
  modelId: string;
  target: Model;
  eagle: RoutedEagleDrafter;
  /** Runs `fn` between two decoding turns (the scheduler's). */
  atStepBoundary: <T>(fn: () => Promise<T>) => Promise<T>;
  metrics: NodeMetrics;
  /** Counts registry entries refused before any download, by slot and reason. */
  manifestRefusals?: Counter<"role" | "reason">;
  logger: Logger;
  /** Called after each install or refusal (tests wait on it). */
  onOutcome?: (outcome: SwapOutcome) => void;
}

export interface SwapOutcome {
  role: SpeculatorRoleName;
  versionId: string;
  outcome: "swapped" | "refused" | "cleared";
  error?: Error;
  seconds: number;
}

/** Watches the registry and swaps heads in; one manifest at a time per slot, the newest winning. */
export class SpeculatorSwapper {
  private watch: Awaited<ReturnType<SpeculatorRegistry["watch"]>> | undefined;
  private loop: Promise<void> | undefined;
  private readonly pending = new Map<SpeculatorRoleName, ManifestUpdate>();
  private readonly busy = new Set<SpeculatorRoleName>();
  private readonly inflight = new Set<Promise<void>>();
  readonly outcomes: SwapOutcome[] = [];

  constructor(private readonly options: SwapperOptions) {}

  async start(): Promise<void> {
    this.watch = await this.options.registry.watch(this.options.modelId);
    const watch = this.watch;
    this.loop = (async () => {
      try {
        for await (const update of watch) this.enqueue(update);
      } catch (err) {
        this.options.logger.warn({ err }, "speculators: the registry watch ended");
      }
    })();
  }

  async stop(): Promise<void> {
    this.watch?.stop();
    await this.loop;
    await Promise.allSettled([...this.inflight]);
  }

  private enqueue(update: ManifestUpdate): void {
    if (update.refused !== undefined) {
      // Refused before any download: counted and logged; the slot keeps what it serves and what is pending.
      const { reason, message } = update.refused;
      this.options.metrics.swaps.inc({ role: update.slot, outcome: "refused" });
      this.options.manifestRefusals?.inc({ role: update.slot, reason });
      this.options.logger.warn(
        { role: update.slot, revision: update.revision, reason, err: message },
        "speculators: refused a registry entry; serving what was loaded",
      );
      this.record({
        role: update.slot,
        versionId: "",
        outcome: "refused",
        error: update.refused,
        seconds: 0,
      });
      return;
    }
    this.pending.set(update.slot, update);
    if (!this.busy.has(update.slot)) {
      const p = this.drain(update.slot).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  private async drain(role: SpeculatorRoleName): Promise<void> {
    this.busy.add(role);
    try {
      for (let u = this.pending.get(role); u !== undefined; u = this.pending.get(role)) {
        this.pending.delete(role);
        await this.apply(role, u.manifest);
      }
    } finally {
      this.busy.delete(role);
    }
  }

  private record(outcome: SwapOutcome): void {
    this.outcomes.push(outcome);
    if (this.outcomes.length > 100) this.outcomes.shift();
    this.options.onOutcome?.(outcome);
  }

  private async apply(role: SpeculatorRoleName, manifest: SpeculatorManifest | undefined): Promise<void> {
    const { eagle, metrics, logger } = this.options;
    const t0 = performance.now();
    const done = (o: Omit<SwapOutcome, "seconds">) =>
      this.record({ ...o, seconds: (performance.now() - t0) / 1000 });
    if (manifest === undefined) {
      await this.options.atStepBoundary(async () => eagle.clear(role));
      metrics.swaps.inc({ role, outcome: "cleared" });
      done({ role, versionId: "", outcome: "cleared" });
      return;
    }
    if (eagle.manifests.get(role)?.versionId === manifest.versionId) return;
    try {
      const blob = await this.options.registry.fetchBlob(manifest);
      await this.options.atStepBoundary(async () => {
        const head = EagleHead.load(this.options.target.backend, blob, this.options.target, {
          version: manifest.versionId,
          manifest,
        });
        eagle.install(role, head, manifest);
      });
      const seconds = (performance.now() - t0) / 1000;
      metrics.swaps.inc({ role, outcome: "swapped" });
      metrics.swapSeconds.observe({ role }, seconds);
      logger.info({ role, version: manifest.versionId, seconds }, "speculators: swapped in");
      done({ role, versionId: manifest.versionId, outcome: "swapped" });
    } catch (err) {
      metrics.swaps.inc({ role, outcome: "refused" });
      const error = err instanceof Error ? err : new Error(String(err));
      logger.warn(
        { role, version: manifest.versionId, err: error.message },
        "speculators: refused a speculator; serving what was loaded",
      );
      done({ role, versionId: manifest.versionId, outcome: "refused", error });
    }
  }
}
