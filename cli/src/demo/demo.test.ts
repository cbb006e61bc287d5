// The demo's arithmetic and its words, without services: the tally's ratios of sums and its domain-matched
// comparison with plain decoding, the workload's schedule, and the report lines a log reader (and the
// npm start test) reads.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Drafter, type SpeculationStats } from "@specloop/proto";
import { DemoTally } from "./tally.js";
import { renderReport, renderScreen } from "./view.js";
import { DEMO_DOMAINS, type DemoDomain, type DemoDrafter, domainAt, drafterAt } from "./workload.js";

function stats(passes: number, perPass: number, version = ""): SpeculationStats {
  return {
    targetPasses: passes,
    proposedTokens: 0,
    acceptedTokens: 0,
    acceptedPerPass: perPass,
    drafter: Drafter.DRAFTER_UNSPECIFIED,
    speculatorVersion: version,
  };
}

/** A request of `tokens` output tokens decoded at `tps` (tokens - 1 decode tokens). */
function add(t: DemoTally, drafter: DemoDrafter, domain: DemoDomain, tps: number, passes = 10, perPass = 1) {
  const version = drafter === "eagle" ? "m-s00000004" : "";
  t.add({
    node: "node-1",
    domain,
    drafter,
    version,
    stats: stats(passes, perPass, version),
    usage: { promptTokens: 4, completionTokens: 11, timeToFirstTokenMs: 1, decodeTokensPerSecond: tps },
  });
}

describe("demo", () => {
  it("demo - tokens/pass and tok/s are ratios of sums", () => {
    const t = new DemoTally();
    add(t, "suffix", "python", 100, 10, 2);
    add(t, "suffix", "python", 50, 30, 1);
    const [row] = t.rows();
    // (20 + 30) tokens over 40 passes; 20 decode tokens over 0.1 + 0.2 s.
    assert.equal(row?.tokensPerPass, 50 / 40);
    assert.ok(Math.abs((row?.tokensPerSecond ?? 0) - 20 / 0.3) < 1e-9);
    assert.equal(row?.speedupVsNone, undefined, "no plain decoding measured yet");
  });

  it("demo - against none only in the row's own domains, weighted by its requests there", () => {
    const t = new DemoTally();
    add(t, "none", "python", 50);
    add(t, "none", "c", 200);
    add(t, "eagle", "python", 100);
    add(t, "eagle", "python", 100);
    add(t, "suffix", "python", 100);
    add(t, "suffix", "c", 100);
    const rows = new Map(t.rows().map((r) => [r.drafter, r]));
    assert.deepEqual([...rows.keys()], ["none", "suffix", "eagle"]);
    assert.ok(Math.abs((rows.get("eagle")?.speedupVsNone ?? 0) - 2) < 1e-9, "python only: 100 / 50");
    // 2x in python, 0.5x in c, one request each: the geometric mean.
    assert.ok(Math.abs((rows.get("suffix")?.speedupVsNone ?? 0) - 1) < 1e-9);
    assert.equal(rows.get("eagle")?.version, "m-s00000004");
    assert.equal(t.perNode.get("node-1"), 6);
  });

  it("demo - the workload: each domain for a phase, in order, cycling; two eagle requests and one hybrid in five", () => {
    assert.deepEqual(
      [0, 9, 10, 25, 29, 30].map((i) => domainAt(i, 10)),
      ["python", "python", "c", "prose", "prose", "python"],
    );
    assert.deepEqual(DEMO_DOMAINS, ["python", "c", "prose"]);
    const five = [0, 1, 2, 3, 4].map(drafterAt);
    assert.equal(five.filter((d) => d === "eagle").length, 2);
    assert.deepEqual([...new Set(five)].sort(), ["eagle", "hybrid", "none", "suffix"]);
  });

  it("demo - a report names each version with its status and tokens/pass; the screen has the decisions", () => {
    const t = new DemoTally();
    add(t, "none", "c", 50);
    add(t, "eagle", "c", 60, 10, 1.5);
    const snapshot = {
      elapsedSeconds: 75,
      domain: "c" as const,
      phaseRequests: 300,
      totalRequests: 302,
      requestsPerSecond: 2.5,
      perNode: t.perNode,
      trainer: "step 4",
      rows: t.rows(),
      statusOf: (v: string) => (v === "m-s00000004" ? "canary" : undefined),
      decisions: [],
      errors: 0,
      lastError: "",
    };
    const report = renderReport(snapshot).join("\n");
    assert.match(
      report,
      /domain c \(python -> \[c\] -> prose, 300 requests each\); 302 requests \(node-1 2\)/,
    );
    assert.match(
      report,
      /^ {2}eagle m-s00000004 \(canary\): 1 requests, 1\.50 tokens\/pass, 60\.0 decode tok\/s, 1\.20x none \[c\]$/m,
    );
    assert.match(report, /^ {2}none: 1 requests, 1\.00 tokens\/pass/m);
    const screen = renderScreen(snapshot).join("\n");
    assert.match(screen, /TOKENS\/PASS/);
    assert.match(screen, /decisions \(newest last\):\n {2}none yet/);
  });
});
