// `npm start` as a user runs it (scripts/start.mjs from the build, with a temp data dir and free ports, its
// stdout a pipe as in CI): NATS, the trainer, two inference nodes and the verifier come up; both nodes serve
// and the demo's traffic reaches both; the demo reports, per speculator version, its tokens per target pass;
// Ctrl-C (SIGINT to the launcher) stops the demo, then the services, then NATS, and no process is left;
// a restart on the same data dir goes on from the kept state (the trainer's versions and traces, the
// workload's position).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { checkHealth } from "@specloop/cli";
import { freePort, type TempDir, tempDir } from "@specloop/testkit";

const START = fileURLToPath(new URL("../../scripts/start.mjs", import.meta.url));
/** node-1, the trainer, the verifier, node-2: the launcher's block of ports for --nodes 2. */
const BLOCK = 4;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** The first of `n` consecutive ports that were all free a moment ago. */
async function freeBlock(n: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    if (base + n > 65_535) continue;
    let all = true;
    for (let p = base + 1; p < base + n && all; p++) all = await portFree(p);
    if (all) return base;
  }
}

interface Launcher {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

let dir: TempDir;
let env: NodeJS.ProcessEnv;
const launched: Launcher[] = [];
/** Every process the launchers reported (NATS and the services): none may outlive the test. */
const pids = new Set<number>();

function launch(): Launcher {
  const child = spawn(process.execPath, [START, "--nodes", "2", "--report", "2", "--phase", "20"], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  const l: Launcher = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited: once(child, "exit").then(([code]) => code as number | null),
  };
  launched.push(l);
  return l;
}

async function until<T>(
  what: string,
  l: Launcher,
  probe: () => T | undefined,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (l.child.exitCode !== null || Date.now() > end) {
      assert.fail(`${what}: not seen (exit ${l.child.exitCode})\n${l.stdout()}\n${l.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The "specloop is up" table: each service's gRPC address and pid, and NATS's pid. */
function upTable(out: string): { addresses: Map<string, string>; pids: number[] } | undefined {
  const at = out.indexOf("specloop is up");
  if (at === -1) return undefined;
  const block = out.slice(at, out.indexOf("Ctrl-C stops everything", at));
  if (block.length === 0) return undefined;
  const addresses = new Map<string, string>();
  const found: number[] = [];
  const nats = /started here, pid (\d+)/.exec(block);
  if (nats) found.push(Number(nats[1]));
  for (const m of block.matchAll(/^ {2}(\S+)\s+grpc (\S+)\s.*pid (\d+)/gm)) {
    addresses.set(m[1] as string, m[2] as string);
    found.push(Number(m[3]));
  }
  return { addresses, pids: found };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGINT, as Ctrl-C in a terminal reaches the launcher; the shutdown must be clean and in order. */
async function interrupt(l: Launcher): Promise<void> {
  l.child.kill("SIGINT");
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    l.exited,
    new Promise((r) => {
      timer = setTimeout(() => r("still running after 90 s"), 90_000);
    }),
  ]);
  clearTimeout(timer);
  assert.equal(code, 0, `the launcher exits 0 on SIGINT\n${l.stdout().slice(-3000)}\n${l.stderr()}`);
  const out = l.stdout();
  const [demo, services, nats] = [
    "demo: stopped after",
    "specloop: draining the services",
    "specloop: stopping NATS",
  ].map((s) => out.lastIndexOf(s)) as [number, number, number];
  assert.ok(demo >= 0 && demo < services && services < nats, `in order\n${out.slice(-2000)}`);
  assert.match(out, /specloop: stopped\n$/);
  for (const pid of pids) assert.ok(!alive(pid), `process ${pid} exited with the launcher`);
}

before(async () => {
  dir = tempDir("specloop-start-");
  const { SPECLOOP_BUS__URLS: _external, ...rest } = process.env;
  env = {
    ...rest,
    SPECLOOP_DATA_DIR: join(dir.path, "data"),
    SPECLOOP_START_NATS_PORT: String(await freePort()),
    SPECLOOP_START_GRPC_PORT: String(await freeBlock(BLOCK)),
    SPECLOOP_START_METRICS_PORT: String(await freeBlock(BLOCK)),
  };
});

after(async () => {
  // Whatever failed, nothing started here outlives the test.
  for (const l of launched) if (l.child.exitCode === null) l.child.kill("SIGKILL");
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  dir?.dispose();
});

describe("npm start", () => {
  test("npm start - two nodes serve the demo, which reports tokens/pass per version; Ctrl-C stops every process in order; a restart goes on from the kept state", async () => {
    const first = launch();
    const up = await until("the services up", first, () => upTable(first.stdout()), 180_000);
    for (const pid of up.pids) pids.add(pid);
    assert.equal(up.pids.length, 5, "NATS, the trainer, two nodes and the verifier");
    for (const node of ["node-1", "node-2"]) {
      const server = up.addresses.get(node) as string;
      assert.equal((await checkHealth({ server, service: "", timeoutMs: 5_000 })).status, "SERVING", node);
    }
    // A report where both nodes have served, an eagle version and plain decoding have tokens/pass, and the
    // trainer has consumed traces.
    const report = await until(
      "a demo report with both nodes, an eagle version, none, and consumed traces",
      first,
      () => {
        const reports = first
          .stdout()
          .split(/^demo: specloop demo, /m)
          .slice(1);
        return reports
          .reverse()
          .find(
            (r) =>
              /\(node-\d \d+, node-\d \d+\)/.test(r) &&
              !/node-\d 0\b/.test(r) &&
              /^demo: {3}eagle tiny-code-s\d+ \((live|canary)\): \d+ requests, \d+\.\d\d tokens\/pass/m.test(
                r,
              ) &&
              /^demo: {3}none: \d+ requests, 1\.00 tokens\/pass/m.test(r) &&
              /, [1-9]\d* traces consumed/.test(r),
          );
      },
      180_000,
    );
    const consumed = Number(/, (\d+) traces consumed/.exec(report)?.[1]);
    const versions = new Set(first.stdout().match(/tiny-code-s\d+/g));
    await interrupt(first);
    const stopped = /demo: stopped after \d+ requests \((\d+) in all\)/.exec(first.stdout());
    const done = Number(stopped?.[1]);
    assert.ok(done > 0);

    // The restart: the trainer's state and the workload's position are where the first run left them.
    const second = launch();
    const again = await until("the services up again", second, () => upTable(second.stdout()), 180_000);
    for (const pid of again.pids) pids.add(pid);
    const resumed = await until(
      "the demo's first line",
      second,
      () =>
        /demo: trainer at step (\d+), (\d+) traces consumed, live (\S+?),.* workload at request (\d+)/.exec(
          second.stdout(),
        ) ?? undefined,
      120_000,
    );
    assert.ok(Number(resumed[2]) >= consumed, `traces consumed kept: ${resumed[0]} (first run: ${consumed})`);
    assert.ok(versions.has(resumed[3] as string), `live ${resumed[3]} is a version of the first run`);
    assert.ok(Number(resumed[4]) >= done, `the workload goes on from request ${done}: ${resumed[0]}`);
    // The day-0 version the restart's history shows is the first run's (created then, not again now).
    const dayZero = /decision (\S+) +create +tiny-code-s00000000 /;
    assert.equal(dayZero.exec(second.stdout())?.[1], dayZero.exec(first.stdout())?.[1] ?? "first run");
    await until(
      "a demo report of the restart",
      second,
      () => (/^demo: {3}eagle tiny-code-s\d+ .*tokens\/pass/m.test(second.stdout()) ? true : undefined),
      120_000,
    );
    await interrupt(second);
  });
});
