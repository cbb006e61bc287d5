// `specloop versions list|show|promote|rollback|pin|unpin`: the trainer's speculator versions, and the
// operator's hand on them. show prints a version's history, each gate decision with the evidence it rested
// on (GetVersion's events). The changes need the admin token; the trainer records its identity.
import {
  GetVersionResponse,
  ListVersionsResponse,
  PinVersionResponse,
  PromoteVersionResponse,
  RollbackVersionResponse,
  type SpeculatorVersion,
  UnpinVersionResponse,
  type VersionEvent,
  VersionStatus,
} from "@specloop/proto";
import { type Command, InvalidArgumentError, Option } from "commander";
import { fixed, statusName, time } from "../format.js";
import type { Io } from "../io.js";
import {
  addJsonOption,
  addTrainerOptions,
  type JsonOption,
  positiveInt,
  type TrainerOptions,
} from "../options.js";
import { renderFields, renderTable } from "../table.js";
import { withTrainer } from "./trainer-action.js";

const STATUS_NAMES: Record<string, VersionStatus> = {
  candidate: VersionStatus.VERSION_STATUS_CANDIDATE,
  canary: VersionStatus.VERSION_STATUS_CANARY,
  live: VersionStatus.VERSION_STATUS_LIVE,
  retired: VersionStatus.VERSION_STATUS_RETIRED,
  rejected: VersionStatus.VERSION_STATUS_REJECTED,
};

export function parseStatuses(value: string): VersionStatus[] {
  return value.split(",").map((s) => {
    const status = STATUS_NAMES[s.trim()];
    if (status === undefined) {
      throw new InvalidArgumentError(`"${s}" is not one of ${Object.keys(STATUS_NAMES).join(", ")}`);
    }
    return status;
  });
}

export function versionRows(versions: readonly SpeculatorVersion[]): string {
  return renderTable(
    [
      "VERSION",
      "STATUS",
      "PIN",
      "STEPS",
      "SAMPLES",
      "LOSS",
      "SIM/PASS",
      "ACC/PASS",
      "TOK/S",
      "SPEEDUP",
      "CREATED",
      "BY",
    ],
    versions.map((v) => [
      v.versionId,
      statusName(v.status),
      v.pinned ? "pinned" : "",
      v.trainingSteps,
      v.samplesSeen,
      fixed(v.offline?.loss, 3),
      fixed(v.offline?.simulatedAcceptedPerPass),
      v.online && v.online.requests > 0 ? fixed(v.online.acceptedPerPass) : undefined,
      v.online && v.online.requests > 0 ? fixed(v.online.decodeTokensPerSecond, 1) : undefined,
      v.online && v.online.speedupVsLive > 0 ? `${fixed(v.online.speedupVsLive)}x` : undefined,
      time(v.createdAt),
      v.promotedBy || undefined,
    ]),
  );
}

export function versionFields(v: SpeculatorVersion): string {
  return renderFields([
    ["version", v.versionId],
    ["model", v.modelId],
    ["status", `${statusName(v.status)}${v.pinned ? " (pinned)" : ""}`],
    ["reason", v.statusReason || undefined],
    ["parent", v.parentVersionId || undefined],
    ["architecture", v.architecture],
    ["training steps", v.trainingSteps],
    ["samples seen", v.samplesSeen],
    [
      "offline",
      v.offline
        ? `loss ${fixed(v.offline.loss, 4)}, top-1 ${fixed(v.offline.accuracy, 3)}, ` +
          `simulated ${fixed(v.offline.simulatedAcceptedPerPass)} tokens/pass`
        : undefined,
    ],
    [
      "online",
      v.online && v.online.requests > 0
        ? `${v.online.requests} requests, ${fixed(v.online.acceptedPerPass)} tokens/pass, ` +
          `${fixed(v.online.decodeTokensPerSecond, 1)} tok/s, ${fixed(v.online.speedupVsLive)}x live`
        : undefined,
    ],
    ["sha256", v.sha256],
    ["size", `${v.sizeBytes} bytes`],
    ["created", time(v.createdAt)],
    ["promoted", v.promotedAt ? `${time(v.promotedAt)} by ${v.promotedBy}` : undefined],
  ]);
}

/** The lines of one gate decision's evidence, indented under its event. */
export function evidenceLines(e: VersionEvent): string[] {
  const ev = e.evidence;
  if (ev === undefined) return [];
  // A rollback compares the live version's recent requests with its earlier ones; the rest, canary vs live.
  const arms = e.action === "rollback" ? ["recent", "earlier"] : ["canary", "live"];
  const pair = (xs: readonly number[], digits: number) =>
    arms.map((arm, i) => `${arm} ${fixed(xs[i], digits) ?? "-"}`).join(", ");
  const level = ev.threshold > 1 ? `${Math.round((1 - 1 / ev.threshold) * 100)}%` : "";
  const sign = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(3)}`;
  return [
    `    evidence: requests ${arms.map((arm, i) => `${arm} ${ev.samples[i] ?? 0}`).join(", ")}` +
      (ev.domains.length > 0 ? ` (domains ${ev.domains.join(", ")})` : ""),
    `      mean log tok/s ${pair(ev.meanLogTokensPerSecond, 3)}; difference ${sign(ev.difference)}, ` +
      `${level} interval [${sign(ev.intervalLow)}, ${sign(ev.intervalHigh)}]`,
    `      mSPRT statistic ${ev.statistic.toPrecision(4)} against threshold ${ev.threshold.toPrecision(4)} ` +
      `(${ev.statistic >= ev.threshold ? "crossed" : "not crossed"}); speed-up ${fixed(ev.speedup, 3)}x`,
    `      accepted tokens/pass ${pair(ev.acceptedPerPass, 2)}`,
  ];
}

export function eventLines(events: readonly VersionEvent[]): string {
  if (events.length === 0) return "no events";
  const lines: string[] = [];
  for (const e of events) {
    const from = statusName(e.fromStatus);
    const to = statusName(e.toStatus);
    const move = e.fromStatus === VersionStatus.VERSION_STATUS_UNSPECIFIED ? to : `${from} -> ${to}`;
    lines.push(`${time(e.at) ?? "-"}  ${e.action.padEnd(8)}  ${move.padEnd(20)}  by ${e.actor}: ${e.reason}`);
    lines.push(...evidenceLines(e));
  }
  return lines.join("\n");
}

export function addVersionsCommands(program: Command, io: Io): void {
  const versions = program
    .command("versions")
    .description(
      "the trainer's speculator versions: list, show (with the gate's evidence), promote, roll back, pin",
    );

  addJsonOption(
    addTrainerOptions(
      versions
        .command("list")
        .description("versions, newest first")
        .addOption(
          new Option(
            "--status <list>",
            "only these statuses: candidate,canary,live,retired,rejected",
          ).argParser(parseStatuses),
        )
        .addOption(new Option("--limit <n>", "at most this many").argParser(positiveInt).default(50)),
    ),
  ).action(
    withTrainer(
      io,
      "versions list",
      async (api, opts: TrainerOptions & JsonOption & { status?: VersionStatus[]; limit: number }) => {
        const res = await api.listVersions(opts.status ?? [], opts.limit);
        io.out(
          opts.json
            ? JSON.stringify(ListVersionsResponse.toJSON(res))
            : res.versions.length === 0
              ? "no versions"
              : versionRows(res.versions),
        );
      },
    ),
  );

  addJsonOption(
    addTrainerOptions(
      versions
        .command("show")
        .description("one version: its fields and its history")
        .argument("<version>", "version id"),
    ),
  ).action(
    withTrainer(io, "versions show", async (api, id: string, opts: TrainerOptions & JsonOption) => {
      const res = await api.getVersion(id);
      if (opts.json) {
        io.out(JSON.stringify(GetVersionResponse.toJSON(res)));
        return;
      }
      if (res.version) io.out(versionFields(res.version));
      io.out("");
      io.out("events (oldest first):");
      io.out(eventLines(res.events));
    }),
  );

  addJsonOption(
    addTrainerOptions(
      versions
        .command("promote")
        .description("make a version live (or, with --canary, the canary); needs the admin token")
        .argument("<version>", "version id")
        .option("--canary", "make it the canary instead of live")
        .option("--reason <text>", "why, for the version's history", ""),
    ),
  ).action(
    withTrainer(
      io,
      "versions promote",
      async (api, id: string, opts: TrainerOptions & JsonOption & { canary?: boolean; reason: string }) => {
        const res = await api.promote(id, opts.canary ?? false, opts.reason);
        if (opts.json) io.out(JSON.stringify(PromoteVersionResponse.toJSON(res)));
        else
          io.out(
            `${res.version?.versionId} is ${statusName(res.version?.status ?? VersionStatus.VERSION_STATUS_UNSPECIFIED)}`,
          );
      },
    ),
  );

  addJsonOption(
    addTrainerOptions(
      versions
        .command("rollback")
        .description("put the previous live version back and retire the current one; needs the admin token")
        .option("--reason <text>", "why, for the versions' history", ""),
    ),
  ).action(
    withTrainer(
      io,
      "versions rollback",
      async (api, opts: TrainerOptions & JsonOption & { reason: string }) => {
        const res = await api.rollback(opts.reason);
        if (opts.json) io.out(JSON.stringify(RollbackVersionResponse.toJSON(res)));
        else io.out(`${res.live?.versionId} is live again; ${res.retired?.versionId} is retired`);
      },
    ),
  );

  addJsonOption(
    addTrainerOptions(
      versions
        .command("pin")
        .description(
          "pin the live version: automatic promotion and rollback stop until unpinned; needs the admin token",
        )
        .option("--reason <text>", "why, for the version's history", ""),
    ),
  ).action(
    withTrainer(io, "versions pin", async (api, opts: TrainerOptions & JsonOption & { reason: string }) => {
      const res = await api.pin(opts.reason);
      if (opts.json) io.out(JSON.stringify(PinVersionResponse.toJSON(res)));
      else io.out(`${res.version?.versionId} is pinned`);
    }),
  );

  addJsonOption(
    addTrainerOptions(versions.command("unpin").description("unpin the live version; needs the admin token")),
  ).action(
    withTrainer(io, "versions unpin", async (api, opts: TrainerOptions & JsonOption) => {
      const res = await api.unpin();
      if (opts.json) io.out(JSON.stringify(UnpinVersionResponse.toJSON(res)));
      else io.out(`${res.version?.versionId} is unpinned`);
    }),
  );
}
