// `specloop status`: the fleet as its heartbeats describe it (the node KV bucket on NATS): each node's
// model, backend, the speculator versions it serves live and as canary, its queue, KV use and output
// tokens/s, and its acceptance per drafter, version and domain. A heartbeat older than --stale-after (by
// default two of the nodes' default heartbeat intervals) marks the node stale: it stopped reporting and
// drops out of the bucket when its entry expires. Exit 0 when at least one node is live and none is stale.
import { Heartbeats } from "@specloop/bus";
import { type NodeStatus, NodeStatus as NodeStatusCodec, SpeculatorRole } from "@specloop/proto";
import { type Command, Option } from "commander";
import { action } from "../action.js";
import { EXIT } from "../exit-codes.js";
import { age, drafterName, fixed } from "../format.js";
import type { Io } from "../io.js";
import {
  addJsonOption,
  addNatsOptions,
  type JsonOption,
  type NatsOptions,
  openBus,
  positiveInt,
} from "../options.js";
import { renderTable } from "../table.js";

/** Two default heartbeat intervals (the nodes report every 5 s unless configured otherwise). */
export const DEFAULT_STALE_AFTER_MS = 10_000;

export interface FleetNode {
  status: NodeStatus;
  /** Seconds since the node's last heartbeat. */
  ageSeconds: number;
  stale: boolean;
  live: string | undefined;
  canary: string | undefined;
  /** Output tokens per second since the node started (its acceptance cells' tokens over its uptime). */
  tokensPerSecond: number | undefined;
}

export function fleetNode(status: NodeStatus, now: number, staleAfterMs: number): FleetNode {
  const reported = status.reportedAt?.getTime() ?? 0;
  const ageSeconds = (now - reported) / 1000;
  const slot = (role: SpeculatorRole) => status.speculators.find((s) => s.role === role)?.versionId;
  const tokens = status.acceptance.reduce((sum, a) => sum + a.outputTokens, 0);
  return {
    status,
    ageSeconds,
    stale: now - reported > staleAfterMs,
    live: slot(SpeculatorRole.SPECULATOR_ROLE_LIVE),
    canary: slot(SpeculatorRole.SPECULATOR_ROLE_CANARY),
    tokensPerSecond: status.uptimeSeconds > 0 ? tokens / status.uptimeSeconds : undefined,
  };
}

export function nodesTable(nodes: readonly FleetNode[]): string {
  return renderTable(
    [
      "NODE",
      "MODEL",
      "BACKEND",
      "LIVE",
      "CANARY",
      "RUNNING",
      "WAITING",
      "KV",
      "TOK/S",
      "UPTIME",
      "LAST SEEN",
      "STATE",
    ],
    nodes.map((n) => {
      const s = n.status;
      return [
        s.nodeId,
        s.modelId,
        s.backend,
        n.live,
        n.canary,
        s.runningRequests,
        s.waitingRequests,
        s.kvBlocksTotal > 0
          ? `${s.kvBlocksUsed}/${s.kvBlocksTotal} (${Math.round((100 * s.kvBlocksUsed) / s.kvBlocksTotal)}%)`
          : undefined,
        fixed(n.tokensPerSecond, 1),
        age(s.uptimeSeconds),
        `${age(n.ageSeconds)} ago`,
        n.stale ? "STALE" : "ok",
      ];
    }),
  );
}

export function acceptanceTable(nodes: readonly FleetNode[]): string {
  const rows = nodes.flatMap((n) =>
    n.status.acceptance.map((a) => [
      n.status.nodeId,
      drafterName(a.drafter),
      a.speculatorVersion || undefined,
      a.domain || "(none)",
      a.targetPasses,
      a.outputTokens,
      fixed(a.acceptedPerPass),
    ]),
  );
  return rows.length === 0
    ? "no requests served yet"
    : renderTable(["NODE", "DRAFTER", "VERSION", "DOMAIN", "PASSES", "TOKENS", "TOKENS/PASS"], rows);
}

export function addStatusCommand(program: Command, io: Io): void {
  addJsonOption(
    addNatsOptions(
      program
        .command("status")
        .description(
          "the fleet from the nodes' heartbeats on NATS (exit 0 only when a node is live and none is stale)",
        )
        .addOption(
          new Option("--stale-after <ms>", "a heartbeat older than this marks its node stale")
            .argParser(positiveInt)
            .default(DEFAULT_STALE_AFTER_MS),
        ),
    ),
  ).action(
    action(io, "status", async (opts: NatsOptions & JsonOption & { staleAfter: number }) => {
      const bus = await openBus(opts);
      let statuses: NodeStatus[];
      try {
        statuses = await (await Heartbeats.open(bus.js)).live();
      } finally {
        await bus.close();
      }
      const now = Date.now();
      const nodes = statuses.map((s) => fleetNode(s, now, opts.staleAfter));
      const stale = nodes.filter((n) => n.stale).length;
      if (opts.json) {
        io.out(
          JSON.stringify({
            staleAfterMs: opts.staleAfter,
            nodes: nodes.map((n) => ({
              ...(NodeStatusCodec.toJSON(n.status) as object),
              ageSeconds: n.ageSeconds,
              stale: n.stale,
              liveVersionId: n.live ?? "",
              canaryVersionId: n.canary ?? "",
              tokensPerSecond: n.tokensPerSecond ?? null,
            })),
          }),
        );
      } else if (nodes.length > 0) {
        io.out(nodesTable(nodes));
        io.out("");
        io.out("acceptance (output tokens per target pass, recent window):");
        io.out(acceptanceTable(nodes));
      }
      if (nodes.length === 0) {
        io.err("specloop status: no node is reporting (none has sent a heartbeat lately)");
        return EXIT.failed;
      }
      if (stale > 0) {
        io.err(
          `specloop status: ${stale} of ${nodes.length} node(s) stale (no heartbeat for ${opts.staleAfter} ms)`,
        );
        return EXIT.failed;
      }
      return EXIT.ok;
    }),
  );
}
