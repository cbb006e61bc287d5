// The inference node assembled: the engine on the configured backend, the KV pool sized from its budget,
// the drafters, the speculative decoder behind the scheduler, the acceptance book, traces out to JetStream
// and the fleet's traces in (into the suffix tree), metrics, and the status the heartbeat reports.
import { resolve } from "node:path";
import type { Bus } from "@specloop/bus";
import {
  blocksForBudget,
  KvManager,
  type LoadedModel,
  loadModelDir,
  Model,
  Rng,
  selectBackend,
  type Tokenizer,
} from "@specloop/engine";
import { type GenerateRequest, NodeStatus } from "@specloop/proto";
import type { Logger } from "@specloop/runtime";
import {
  DecodeSequence,
  DraftCapTuner,
  type Drafter,
  type DrafterKind,
  DraftModelDrafter,
  HybridDrafter,
  parseBudgetPolicyOptions,
  policyBudget,
  SpeculativeDecoder,
  StopCondition,
  SuffixDrafter,
} from "@specloop/speculation";
import type { Registry } from "prom-client";
import { AcceptanceBook } from "./acceptance.js";
import type { InferenceConfig } from "./config.js";
import { connectFleet, type FleetLink } from "./fleet.js";
import { BoundedLabels } from "./labels.js";
import { type NodeMetrics, nodeMetrics } from "./metrics.js";
import { type RequestLimits, type ResolvedRequest, resolveRequest } from "./requests.js";
import { usage } from "./response.js";
import { type FinishedRequest, type RequestEvent, Scheduler, type StepEngine } from "./scheduler.js";
import { RoutedEagleDrafter, type SwapOutcome } from "./speculators.js";
import { buildTrace } from "./traces.js";

export const SERVICE_VERSION = "0.1.0";

export interface NodeIdentity {
  nodeId: string;
  modelId: string;
  startedAt: number;
}

export interface OpenNodeOptions {
  config: InferenceConfig;
  logger: Logger;
  registry: Registry;
  /** Absent: no traces out, no fleet traces in, no speculator swaps (in-process tests of the API alone). */
  bus?: Bus;
  /** Told of every speculator swap or refusal (tests wait on it). */
  onSwap?: (outcome: SwapOutcome) => void;
}

export class InferenceNode {
  readonly identity: NodeIdentity;
  readonly limits: RequestLimits;
  readonly scheduler: Scheduler;
  readonly acceptance = new AcceptanceBook();
  readonly metrics: NodeMetrics;
  private fleet: FleetLink | undefined;
  /** The learned drafter, routing live and canary; offered to requests once a live head is loaded. */
  readonly eagle: RoutedEagleDrafter;
  /** Suffix where its match is strong, the learned head elsewhere; offered with the eagle drafter. */
  readonly hybrid: HybridDrafter;
  /** Draws which requests' traces carry hidden features (the share, not the exact requests, matters). */
  private readonly featureRng = new Rng(0x9e3779b9);
  /** Domain tags, bounded before they key the acceptance book, the heartbeat and traces. */
  private readonly domains = new BoundedLabels("domain");

  private constructor(
    private readonly options: OpenNodeOptions,
    /** The model's tokenizer (the node keeps no host copy of the weights once they are uploaded). */
    readonly tokenizer: Tokenizer,
    private readonly chatTemplate: LoadedModel["chatTemplate"],
    modelId: string,
    readonly model: Model,
    readonly backendKind: string,
    readonly kv: KvManager,
    readonly decoder: SpeculativeDecoder,
    readonly drafters: Map<DrafterKind, Drafter>,
    readonly suffix: SuffixDrafter,
  ) {
    const { config } = options;
    this.eagle = new RoutedEagleDrafter({
      depth: Math.max(1, config.speculation.maxDraftTokens),
      blockSize: kv.blockSize,
    });
    this.hybrid = new HybridDrafter(suffix, this.eagle);
    this.identity = { nodeId: config.node.id, modelId, startedAt: Date.now() };
    this.metrics = nodeMetrics(options.registry, {
      queueDepth: () => this.scheduler.queueDepth,
      running: () => this.scheduler.runningCount,
      kvBlocksUsed: () => kv.spec.numBlocks - kv.numFreeBlocks,
      kvBlocksTotal: () => kv.spec.numBlocks,
    });
    const tok = tokenizer;
    const chat = chatTemplate;
    this.limits = {
      modelId,
      vocabSize: model.config.vocabSize,
      contextLength: model.config.maxPositions,
      eosTokenIds: model.config.eosTokenIds,
      defaultMaxTokens: config.scheduler.defaultMaxTokens,
      maxTokensLimit: Math.min(config.scheduler.maxTokensLimit, model.config.maxPositions),
      maxDraftTokens: config.speculation.maxDraftTokens,
      defaultDrafter: config.speculation.defaultDrafter,
      availableDrafters: () => new Set(this.drafters.keys()),
      tokenizer: tok,
      renderChat:
        chat === undefined ? undefined : (messages) => chat.render(messages, { addGenerationPrompt: true }),
    };
    this.scheduler = new Scheduler({
      engine: decoderEngine(decoder),
      maxBatch: config.scheduler.maxBatch,
      maxQueue: config.scheduler.maxQueue,
      prefillTokensPerStep: config.scheduler.prefillTokensPerStep,
      maxDraftTokens: config.speculation.maxDraftTokens,
      onFinished: (r) => this.finished(r),
      onStep: ({ rows, seconds }) => {
        this.metrics.stepSeconds.observe(seconds);
        this.metrics.stepRows.observe(rows);
      },
    });
  }

  static async open(options: OpenNodeOptions): Promise<InferenceNode> {
    const { config, logger } = options;
    const selected = await selectBackend(config.node.backend, {
      cpu: config.node.cpuThreads > 0 ? { threads: config.node.cpuThreads } : {},
    });
    for (const note of selected.notes) logger.info(`backend: ${note}`);
    const loaded = await loadModelDir(resolve(config.node.modelDir));
    const model = Model.load(selected.backend, loaded);
    const bs = config.scheduler.kvBlockSize;
    const spec = model.kvSpec(0, bs);
    const numBlocks = blocksForBudget(config.scheduler.kvBudgetMib * 2 ** 20, spec);
    if (numBlocks < 2) {
      throw new Error(`scheduler.kv_budget_mib ${config.scheduler.kvBudgetMib} holds fewer than 2 KV blocks`);
    }
    const kv = new KvManager(model.backend, model.kvSpec(numBlocks, bs));
    const drafters = new Map<DrafterKind, Drafter>();
    const suffix = new SuffixDrafter({ fleetMaxTokens: config.speculation.suffixFleetTokens });
    drafters.set("suffix", suffix);
    if (config.speculation.draftModelDir !== "") {
      const draftLoaded = await loadModelDir(resolve(config.speculation.draftModelDir));
      const draft = Model.load(selected.backend, draftLoaded);
      // The draft model's KV: enough for every running sequence at the target's context, within an eighth
      // of the target's budget.
      const draftBlocks = Math.max(
        64,
        blocksForBudget((config.scheduler.kvBudgetMib * 2 ** 20) / 8, draft.kvSpec(0, bs)),
      );
      drafters.set(
        "draft-model",
        new DraftModelDrafter(draft, model.config.vocabSize, {
          numBlocks: draftBlocks,
          blockSize: bs,
          maxDepth: config.speculation.maxDraftTokens,
        }),
      );
    }
    const maxDraft = config.speculation.maxDraftTokens;
    const decoder = new SpeculativeDecoder({
      model,
      kv,
      drafters,
      budgetFor:
        config.speculation.budget === "max"
          ? () => maxDraft
          : policyBudget(parseBudgetPolicyOptions({ maxBudget: maxDraft })),
      draftCap: config.speculation.draftCap ? new DraftCapTuner() : undefined,
      traceTopK: config.traces.topk,
      recordSteps: config.traces.enabled,
      onRefusedProposal: (drafter, reason) => {
        metrics?.refusedProposals.inc({ drafter });
        logger.warn({ drafter, reason }, "inference node: a drafter's proposal was refused before the pass");
      },
    });
    let metrics: NodeMetrics | undefined;
    const node = new InferenceNode(
      options,
      loaded.tokenizer,
      loaded.chatTemplate,
      loaded.modelId,
      model,
      selected.used,
      kv,
      decoder,
      drafters,
      suffix,
    );
    metrics = node.metrics;
    logger.info(
      { model: loaded.modelId, backend: selected.used, kvBlocks: numBlocks, drafters: [...drafters.keys()] },
      "inference node: engine ready",
    );
    if (options.bus !== undefined) await node.connect(options.bus);
    return node;
  }

  /** Traces out, speculators and fleet traces in (fleet.ts). */
  private async connect(bus: Bus): Promise<void> {
    this.fleet = await connectFleet(bus, this, this.options);
  }

  /** A Generate or Complete request resolved for good: validated, named, its drafter and slot chosen. */
  resolve(req: GenerateRequest): ResolvedRequest {
    return resolveRequest(req, this.limits, {
      domainLabel: (d) => this.domains.label(d),
      // No speculation is always a candidate (tried last): auto must never be slower than it.
      chooseDrafter: (candidates, domain) => this.acceptance.choose([...candidates, "none"], domain),
      routeSpeculator: (seqId) => this.eagle.route(seqId),
      captureLayers: () => this.sampleFeatures(),
    });
  }

  /** Queues a resolved request; its sequence and its events (see Scheduler.submit). */
  submit(
    request: ResolvedRequest,
    signal?: AbortSignal,
  ): { seq: DecodeSequence; events: AsyncIterable<RequestEvent> } {
    const seq = new DecodeSequence({
      id: request.seqId,
      prompt: request.promptTokens,
      maxTokens: request.maxTokens,
      sampling: request.sampling,
      seed: request.seed,
      stop: new StopCondition(
        request.stopTokenIds,
        request.stopStrings,
        this.tokenizer.createStreamDecoder({ skipSpecialTokens: true }),
      ),
      drafter: request.drafter,
      maxDraftTokens: request.maxDraftTokens,
      captureLayers: request.captureLayers,
    });
    try {
      return { seq, events: this.scheduler.submit(request, seq, signal) };
    } catch (err) {
      // Refused: the drafter's routing for this sequence is not needed.
      this.eagle.release(seq.id);
      throw err;
    }
  }

  /**
   * The speculator version drafting for a request ("" for drafters without versions): the head in the slot
   * it was routed to at admission, so its last chunk still names the canary after its routing is released.
   */
  versionOf(request: ResolvedRequest): string {
    if (request.drafter === "eagle" || request.drafter === "hybrid") {
      return this.eagle.versionOfRole(request.speculatorRole);
    }
    const d = this.decoder.drafter(request.drafter);
    return d?.versionFor?.(request.seqId) ?? d?.version ?? "";
  }

  /** Whether this request's trace carries hidden features (a configured share, drawn per request). */
  private sampleFeatures(): number[] {
    const { traces } = this.options.config;
    if (!traces.enabled || traces.featureSampleShare <= 0) return [];
    if (this.featureRng.next() >= traces.featureSampleShare) return [];
    return traces.featureLayers.length > 0 ? traces.featureLayers : [this.model.config.numLayers - 1];
  }

  private finished(r: FinishedRequest): void {
    const { seq } = r;
    this.metrics.requests.inc({ finish_reason: r.reason });
    if (seq.targetPasses > 0) {
      const version = this.versionOf(r.request);
      this.metrics.outputTokens.inc({ drafter: seq.drafter }, seq.verifiedTokens);
      this.metrics.targetPasses.inc({ drafter: seq.drafter }, seq.targetPasses);
      this.metrics.acceptedPerPass.observe(
        { drafter: seq.drafter, version },
        seq.verifiedTokens / seq.targetPasses,
      );
      // Decode speed needs two tokens at least (the first comes with the prefill).
      if (seq.outputLength > 1)
        this.acceptance.record(
          seq.drafter,
          version,
          r.request.domain,
          seq.targetPasses,
          seq.verifiedTokens,
          usage(r).decodeTokensPerSecond,
        );
    }
    const traces = this.fleet?.traces;
    if (traces !== undefined && r.error === undefined && seq.outputLength > 0) {
      const trace = buildTrace(
        r,
        {
          nodeId: this.identity.nodeId,
          modelId: this.identity.modelId,
          role: r.request.speculatorRole,
          requestedDrafter: r.request.requestedDrafter,
        },
        this.model.config.hiddenSize,
      );
      traces.offer(trace);
    }
  }

  status(now = Date.now()): NodeStatus {
    return NodeStatus.fromPartial({
      nodeId: this.identity.nodeId,
      modelId: this.identity.modelId,
      backend: this.backendKind,
      speculators: [...this.eagle.manifests.values()],
      runningRequests: this.scheduler.runningCount,
      waitingRequests: this.scheduler.queueDepth,
      kvBlocksUsed: this.kv.spec.numBlocks - this.kv.numFreeBlocks,
      kvBlocksTotal: this.kv.spec.numBlocks,
      acceptance: this.acceptance.stats(),
      uptimeSeconds: (now - this.identity.startedAt) / 1000,
      reportedAt: new Date(now),
      version: SERVICE_VERSION,
      contextLength: this.model.config.maxPositions,
    });
  }

  async close(): Promise<void> {
    await this.fleet?.stopSwaps();
    await this.scheduler.close();
    await this.fleet?.close();
    this.model.backend.destroy();
  }
}

/** The speculative decoder as the scheduler sees it: KV accounting and one step. */
function decoderEngine(decoder: SpeculativeDecoder): StepEngine {
  const kv = decoder.kv;
  return {
    blockSize: kv.blockSize,
    totalBlocks: kv.spec.numBlocks,
    freeBlocks: () => kv.numFreeBlocks,
    cachedTokens: (id) => kv.numTokens(id),
    step: (seqs, options) => decoder.step(seqs, options),
    evict: (seq) => decoder.evict(seq),
    sharePrefix: (parent, seq) => decoder.sharePrefix(parent, seq),
  };
}
