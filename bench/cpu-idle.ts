// `--wait-idle SECONDS` for the CPU benchmarks: the development machine is shared with other sessions'
// tests and benchmarks, and a run that starts while another process holds a core measures that process.
// waitForIdle() samples /proc/stat until the cores' busy share over 3 s is under 10% (returns true), or the
// time is up (false; the caller runs anyway and the JSON says so). Not Linux: returns true at once.
import { readFileSync } from "node:fs";

function cpuTimes(): { idle: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    return { idle, total: v.reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until under `maxBusy` of all cores were busy over a 3 s window; false if `seconds` ran out first. */
export async function waitForIdle(seconds: number, maxBusy = 0.1): Promise<boolean> {
  const until = performance.now() + seconds * 1000;
  for (;;) {
    const a = cpuTimes();
    if (a === undefined) return true;
    await sleep(3000);
    const b = cpuTimes() as { idle: number; total: number };
    const busy = 1 - (b.idle - a.idle) / Math.max(1, b.total - a.total);
    if (busy < maxBusy) return true;
    if (performance.now() > until) return false;
    await sleep(2000);
  }
}
