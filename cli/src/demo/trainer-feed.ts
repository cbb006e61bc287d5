// The trainer as the demo sees it, polled through the CLI's TrainerApi: its status, each version's status,
// and every version event (canary, promote, reject, rollback, ...) once, oldest first, as it happens. A
// restarted demo reads the history the trainer kept, so it goes on from the live version it left.
import {
  type GateEvidence,
  type SpeculatorVersion,
  type TrainerStatus,
  type VersionEvent,
  VersionStatus,
} from "@specloop/proto";
import { fixed, statusName, time } from "../format.js";
import type { TrainerApi } from "../trainer-client.js";

export interface Decision {
  versionId: string;
  event: VersionEvent;
}

/** Versions whose events are read when the feed starts: the newest, enough for the view's history. */
const HISTORY_VERSIONS = 20;

export class TrainerFeed {
  status: TrainerStatus | undefined;
  /** Every version listed at the last poll (newest first, as ListVersions gives them). */
  versions: SpeculatorVersion[] = [];
  /** The last poll's failure, until a poll succeeds. */
  error = "";
  private readonly seenEvents = new Set<string>();
  private readonly knownStatus = new Map<string, string>();

  constructor(private readonly api: TrainerApi) {}

  statusOf(versionId: string): string | undefined {
    const v = this.versions.find((x) => x.versionId === versionId);
    return v === undefined ? undefined : `${statusName(v.status)}${v.pinned ? " (pinned)" : ""}`;
  }

  /** One poll: the status, the versions, and the events not seen before (oldest first). */
  async poll(): Promise<Decision[]> {
    try {
      const [status, list] = await Promise.all([this.api.status(), this.api.listVersions([], 0)]);
      this.status = status.status;
      this.versions = list.versions;
      const changed = list.versions
        .slice(0, HISTORY_VERSIONS)
        .filter((v) => this.knownStatus.get(v.versionId) !== `${v.status}/${v.pinned}`);
      const fresh: Decision[] = [];
      for (const v of changed) {
        const res = await this.api.getVersion(v.versionId);
        this.knownStatus.set(v.versionId, `${v.status}/${v.pinned}`);
        for (const event of res.events) {
          const key = `${v.versionId}/${event.action}/${event.at?.getTime() ?? 0}`;
          if (this.seenEvents.has(key)) continue;
          this.seenEvents.add(key);
          fresh.push({ versionId: v.versionId, event });
        }
      }
      this.error = "";
      return fresh.sort((a, b) => (a.event.at?.getTime() ?? 0) - (b.event.at?.getTime() ?? 0));
    } catch (err) {
      this.error = (err as Error).message;
      return [];
    }
  }
}

function evidenceSummary(e: GateEvidence, action: string): string {
  const arms = action === "rollback" ? ["recent", "earlier"] : ["canary", "live"];
  return (
    `${arms[0]} ${fixed(e.acceptedPerPass[0]) ?? "-"} vs ${arms[1]} ${fixed(e.acceptedPerPass[1]) ?? "-"} ` +
    `tokens/pass over ${e.samples[0] ?? 0}/${e.samples[1] ?? 0} requests, speed-up ${fixed(e.speedup, 3) ?? "-"}x`
  );
}

/** One line per decision: when, what, which version, the move, who and why, and the gate's figures. */
export function decisionLine(d: Decision): string {
  const e = d.event;
  const move =
    e.fromStatus === VersionStatus.VERSION_STATUS_UNSPECIFIED
      ? statusName(e.toStatus)
      : `${statusName(e.fromStatus)} -> ${statusName(e.toStatus)}`;
  const clock = time(e.at)?.slice(11, 19) ?? "--:--:--";
  const evidence = e.evidence === undefined ? "" : ` (${evidenceSummary(e.evidence, e.action)})`;
  const why = e.reason === "" ? "" : `: ${e.reason}`;
  return `${clock}  ${e.action.padEnd(8)} ${d.versionId}  ${move}  by ${e.actor}${why}${evidence}`;
}
