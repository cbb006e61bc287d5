// One sandboxed run: bwrap started with the candidate's code on fd 3 (bound read-only inside), bwrap's JSON
// status on fd 4, the test's stdin written and its stdout read with a cap. The run ends, whatever the
// candidate does, at the first of: its process exits (the sandbox's PID 1 goes, and the kernel kills every
// other process of the namespace), the time limit, the memory limit (the resident memory of every process in
// the sandbox, summed), the output cap, or the caller's signal. Ending it is one SIGKILL to bwrap's process
// group: its sandbox child dies with it (--die-with-parent), and with the namespace's PID 1 every process
// the candidate started, whatever session or group it moved to. bwrap reports the candidate's exit status
// on fd 4 only when the candidate ran; a run that ends without one, unless the verifier ended it, is a
// failure of the sandbox, never a verdict on the candidate.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { SandboxFailedError } from "../errors.js";

/** How often the memory of a running sandbox is summed. */
export const MEMORY_POLL_MS = 10;
/** After bwrap exits, how long its pipes get to close before the run ends without them. */
const CLOSE_GRACE_MS = 100;
const MAX_STDERR_BYTES = 4096;

export type RunOutcome = "exited" | "time_limit" | "memory_limit" | "output_limit";

export interface RunSpec {
  bwrap: string;
  /** bwrap's arguments; they read the code from fd 3 and write the status to fd 4. */
  args: readonly string[];
  code: string;
  stdin: string;
  timeLimitMs: number;
  /** Resident memory of the whole sandbox, bytes. */
  memoryLimitBytes: number;
  maxOutputBytes: number;
  /** Run bwrap as this user (the verifier runs as root and the sandbox must not). */
  user?: { uid: number; gid: number };
  signal?: AbortSignal;
}

export interface RunResult {
  outcome: RunOutcome;
  /** The candidate's exit status (128 + n when killed by signal n); null when the verifier ended it. */
  exitCode: number | null;
  stdout: string;
  /** The first few KiB of what the candidate wrote to stderr. */
  stderr: string;
  ms: number;
  /** The most resident memory the sandbox was seen to hold, bytes. */
  peakMemoryBytes: number;
}

export function runOnce(spec: RunSpec): Promise<RunResult> {
  spec.signal?.throwIfAborted();
  const started = Date.now();
  const child = spawn(spec.bwrap, [...spec.args], {
    stdio: childStdio(),
    detached: true,
    cwd: "/",
    env: {},
    ...(spec.user ?? {}),
  });
  return new Promise<RunResult>((resolve, reject) => {
    let stdout = Buffer.alloc(0);
    let stderr = "";
    let status = "";
    let sandbox: { pid: number; pidNamespace: string } | undefined;
    let ended: RunOutcome | "aborted" | undefined;
    let peak = 0;
    let settled = false;

    const end = (why: RunOutcome | "aborted"): void => {
      ended ??= why;
      killGroup(child);
    };
    const timer = setTimeout(() => end("time_limit"), spec.timeLimitMs);
    const poll = setInterval(() => {
      if (sandbox === undefined) return;
      const bytes = sandboxMemory(sandbox.pid, sandbox.pidNamespace);
      peak = Math.max(peak, bytes);
      if (bytes > spec.memoryLimitBytes) end("memory_limit");
    }, MEMORY_POLL_MS);
    const onAbort = (): void => end("aborted");
    spec.signal?.addEventListener("abort", onAbort, { once: true });

    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(poll);
      spec.signal?.removeEventListener("abort", onAbort);
      for (const s of child.stdio) s?.destroy();
      if (ended === "aborted") {
        reject(spec.signal?.reason ?? new Error("aborted"));
        return;
      }
      const exit = /"exit-code":\s*(\d+)/.exec(status)?.[1];
      if (ended === undefined && exit === undefined) {
        const why = stderr.trim().split("\n")[0] || `bwrap exited with ${child.exitCode ?? child.signalCode}`;
        reject(new SandboxFailedError(`the sandbox did not start the candidate: ${why}`));
        return;
      }
      resolve({
        outcome: ended ?? "exited",
        exitCode: ended === undefined && exit !== undefined ? Number(exit) : null,
        stdout: stdout.toString("utf8"),
        stderr,
        ms: Date.now() - started,
        peakMemoryBytes: peak,
      });
    };

    child.stdout?.on("data", (d: Buffer) => {
      if (stdout.length + d.length > spec.maxOutputBytes) {
        end("output_limit");
        return;
      }
      stdout = Buffer.concat([stdout, d]);
    });
    child.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < MAX_STDERR_BYTES)
        stderr += d.toString("utf8").slice(0, MAX_STDERR_BYTES - stderr.length);
    });
    const statusPipe = child.stdio[4] as Readable;
    statusPipe.on("data", (d: Buffer) => {
      status += d.toString("utf8");
      const pid = /"child-pid":\s*(\d+)/.exec(status)?.[1];
      const ns = /"pid-namespace":\s*(\d+)/.exec(status)?.[1];
      if (sandbox === undefined && pid !== undefined && ns !== undefined) {
        sandbox = { pid: Number(pid), pidNamespace: `pid:[${ns}]` };
      }
    });
    // A candidate that exits without reading its input closes the pipe: not the verifier's error.
    for (const s of [child.stdin, child.stdio[3], statusPipe]) s?.on("error", () => undefined);
    (child.stdio[3] as Writable).end(spec.code);
    child.stdin?.end(spec.stdin);

    child.once("error", (err) => {
      clearTimeout(timer);
      clearInterval(poll);
      settled = true;
      reject(new SandboxFailedError(`cannot run ${spec.bwrap}: ${err.message}`, { cause: err }));
    });
    child.once("close", finish);
    // The namespace is gone once bwrap is; its pipes close with it, but the run never waits on them long.
    child.once("exit", () => setTimeout(finish, CLOSE_GRACE_MS).unref());
  });
}

const O_CLOEXEC = 0o2000000;
let devNull: number | undefined;

/**
 * The child's descriptors: its stdio and fds 3 and 4 as pipes, and /dev/null over every descriptor the
 * verifier inherited without close-on-exec (from whatever started it). Those would otherwise pass through
 * bwrap into the candidate, which must hold nothing of the host's.
 */
function childStdio(): ("pipe" | "ignore" | number)[] {
  const stdio: ("pipe" | "ignore" | number)[] = ["pipe", "pipe", "pipe", "pipe", "pipe"];
  const ours = stdio.length;
  for (const name of readdirSync("/proc/self/fd")) {
    const fd = Number(name);
    if (!(fd >= ours)) continue;
    let flags: number;
    try {
      flags = Number.parseInt(
        /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1] ?? "",
        8,
      );
    } catch {
      continue; // closed meanwhile (the readdir's own descriptor, for one)
    }
    if (Number.isNaN(flags) || (flags & O_CLOEXEC) !== 0) continue;
    devNull ??= openSync("/dev/null", "r+");
    while (stdio.length <= fd) stdio.push("ignore");
    stdio[fd] = devNull;
  }
  return stdio;
}

/** One SIGKILL to bwrap's process group (detached: it leads its own). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/**
 * Resident memory of every process in the sandbox, bytes, read from the sandbox's own /proc (mounted by
 * bwrap in its namespaces, so it lists exactly the sandbox's processes) through its PID 1's root. Until
 * bwrap has switched to the sandbox's root, that path is the host's /proc: its PID 1 is then in another PID
 * namespace than the one bwrap reported, and nothing is counted yet.
 */
export function sandboxMemory(sandboxPid: number, pidNamespace: string): number {
  const proc = `/proc/${sandboxPid}/root/proc`;
  let total = 0;
  let entries: string[];
  try {
    if (readlinkSync(`${proc}/1/ns/pid`) !== pidNamespace) return 0;
    entries = readdirSync(proc);
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`${proc}/${e}/status`, "utf8"));
      if (m?.[1] !== undefined) total += Number(m[1]) * 1024;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}
