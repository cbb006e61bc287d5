// The demo's terminal view. On a terminal: one screen redrawn in place (a header, a table with a row per
// drafter and eagle version, the latest decisions). Elsewhere (a pipe, a log file, CI): plain lines, each
// decision when it is seen and a report every few seconds, so the output reads as a log.
import { age, fixed } from "../format.js";
import { renderTable } from "../table.js";
import type { TallyRow } from "./tally.js";
import { type Decision, decisionLine } from "./trainer-feed.js";
import { DEMO_DOMAINS, type DemoDomain } from "./workload.js";

export interface DemoSnapshot {
  elapsedSeconds: number;
  domain: DemoDomain;
  phaseRequests: number;
  /** Requests finished since the demo state was first created (survives restarts). */
  totalRequests: number;
  requestsPerSecond: number;
  perNode: ReadonlyMap<string, number>;
  trainer: string;
  rows: readonly TallyRow[];
  statusOf: (versionId: string) => string | undefined;
  decisions: readonly Decision[];
  errors: number;
  lastError: string;
}

/** Eagle versions shown: the newest few, and any that is live or canary. */
const EAGLE_ROWS = 8;

function visibleRows(s: DemoSnapshot): TallyRow[] {
  const eagle = s.rows.filter((r) => r.drafter === "eagle");
  const keep = new Set(eagle.slice(-EAGLE_ROWS));
  for (const r of eagle) if (/live|canary/.test(s.statusOf(r.version) ?? "")) keep.add(r);
  return s.rows.filter((r) => r.drafter !== "eagle" || keep.has(r));
}

function header(s: DemoSnapshot): string[] {
  const nodes = [...s.perNode].map(([id, n]) => `${id} ${n}`).join(", ");
  const order = DEMO_DOMAINS.map((d) => (d === s.domain ? `[${d}]` : d)).join(" -> ");
  return [
    `specloop demo, ${age(s.elapsedSeconds)}: domain ${s.domain} (${order}, ${s.phaseRequests} requests each); ` +
      `${s.totalRequests} requests (${nodes || "none yet"}), ${s.requestsPerSecond.toFixed(1)}/s`,
    `trainer: ${s.trainer}`,
  ];
}

function label(r: TallyRow): string {
  return r.drafter === "eagle" ? `eagle ${r.version || "(no head loaded)"}` : r.drafter;
}

/** The whole screen, for a terminal. */
export function renderScreen(s: DemoSnapshot): string[] {
  const table = renderTable(
    ["DRAFTER", "STATUS", "REQUESTS", "TOKENS/PASS", "DECODE TOK/S", "VS NONE", "DOMAINS"],
    visibleRows(s).map((r) => [
      label(r),
      r.drafter === "eagle" ? s.statusOf(r.version) : undefined,
      r.requests,
      fixed(r.tokensPerPass),
      fixed(r.tokensPerSecond, 1),
      r.speedupVsNone === undefined ? undefined : `${fixed(r.speedupVsNone)}x`,
      r.domains.join(","),
    ]),
  );
  const lines = [...header(s), "", ...table.split("\n"), "", "decisions (newest last):"];
  const recent = s.decisions.slice(-8);
  if (recent.length === 0) lines.push("  none yet");
  for (const d of recent) lines.push(`  ${decisionLine(d)}`);
  if (s.errors > 0) lines.push("", `failed requests: ${s.errors} (last: ${s.lastError})`);
  lines.push("", "Ctrl-C stops the demo, then the services, then NATS.");
  return lines;
}

/** One report as log lines: the header, then a line per row. */
export function renderReport(s: DemoSnapshot): string[] {
  const lines = header(s);
  for (const r of visibleRows(s)) {
    const status = r.drafter === "eagle" ? ` (${s.statusOf(r.version) ?? "unknown"})` : "";
    const speedup = r.speedupVsNone === undefined ? "" : `, ${fixed(r.speedupVsNone)}x none`;
    lines.push(
      `  ${label(r)}${status}: ${r.requests} requests, ${fixed(r.tokensPerPass) ?? "-"} tokens/pass, ` +
        `${fixed(r.tokensPerSecond, 1) ?? "-"} decode tok/s${speedup} [${r.domains.join(",")}]`,
    );
  }
  if (s.errors > 0) lines.push(`  failed requests: ${s.errors} (last: ${s.lastError})`);
  return lines;
}

export interface ViewSink {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/** Draws snapshots: in place on a terminal, as prefixed log lines elsewhere. */
export class DemoView {
  private drawnLines = 0;
  private lastReport = 0;

  constructor(
    private readonly out: ViewSink,
    private readonly reportEveryMs: number,
  ) {}

  get live(): boolean {
    return this.out.isTTY === true;
  }

  /** A line outside the screen (a start or stop message). */
  say(line: string): void {
    this.clear();
    this.out.write(`demo: ${line}\n`);
  }

  decision(d: Decision): void {
    if (!this.live) this.out.write(`demo: decision ${decisionLine(d)}\n`);
  }

  draw(s: DemoSnapshot, now = Date.now(), force = false): void {
    if (this.live) {
      // A terminal that does not say its width (0 or none) gets lines of up to 120 characters.
      const width = Math.max(20, this.out.columns || 120);
      const lines = renderScreen(s).map((l) => (l.length > width - 1 ? `${l.slice(0, width - 2)}~` : l));
      // Up to the screen's first line, erase to the end, draw again.
      const up = this.drawnLines > 0 ? `\x1b[${this.drawnLines}F\x1b[0J` : "";
      this.out.write(`${up}${lines.join("\n")}\n`);
      this.drawnLines = lines.length;
      return;
    }
    if (!force && now - this.lastReport < this.reportEveryMs) return;
    this.lastReport = now;
    this.out.write(
      `${renderReport(s)
        .map((l) => `demo: ${l}`)
        .join("\n")}\n`,
    );
  }

  /** Leaves the last screen on the terminal and writes below it from now on. */
  private clear(): void {
    this.drawnLines = 0;
  }
}
