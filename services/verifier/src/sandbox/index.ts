// The tests judge's sandbox: candidate code runs under bubblewrap (bwrap) in fresh user, PID, mount,
// network, IPC, UTS and cgroup namespaces, sees only its interpreter and that interpreter's libraries
// (read-only), writes only to a size-capped tmpfs at /tmp, and runs under rlimits set inside the sandbox
// (address space, file size, processes, open files, CPU, no core files). Every sandbox the verifier runs, for
// whichever call, takes one of `maxSandboxes` slots. See docs/SECURITY.md (Verifier) for what a candidate
// can and cannot do.
//
// Processes: RLIMIT_NPROC counts the tasks of one user in one user namespace, so it is set inside the
// sandbox (by prlimit, after bwrap made the namespace): the count is this sandbox's alone, and sandboxes do
// not starve each other. The kernel never applies it to root (uid 0 outside the namespace), so a verifier
// running as root starts bwrap as an unprivileged user (sandboxUid, nobody by default).
import { readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxUnavailableError } from "../errors.js";
import {
  findOnPath,
  type Interpreter,
  javascript,
  MIN_MEMORY_MB,
  type ProbeUser,
  python,
  type SandboxLanguage,
} from "./interpreters.js";
import { type Mount, sharedLibraries } from "./layout.js";
import { type RunResult, runOnce } from "./process.js";
import { Slots } from "./slots.js";

export { MIN_MEMORY_MB, SANDBOX_LANGUAGES, type SandboxLanguage } from "./interpreters.js";
export type { RunOutcome, RunResult } from "./process.js";

export interface SandboxOptions {
  /** The bubblewrap executable (a name on PATH or a path). */
  bwrap: string;
  /** The Python interpreter (a name on PATH or a path), as the sandbox's user resolves it. */
  python: string;
  /** Sandboxes running at once, across every call. */
  maxSandboxes: number;
  /** Processes or threads a candidate may start beyond its interpreter's own. */
  maxProcesses: number;
  /** Size of the tmpfs at /tmp, the only writable place; also the largest file. */
  tmpfsMb: number;
  /** Output past this fails the run. */
  maxOutputBytes: number;
  /** The user bwrap runs as when the verifier is root. */
  user: ProbeUser;
}

export interface RunRequest {
  language: SandboxLanguage;
  code: string;
  stdin: string;
  timeLimitMs: number;
  memoryLimitMb: number;
  signal?: AbortSignal;
}

/**
 * What the self-check runs in a fresh sandbox before the first candidate of a language: long enough for the
 * memory watcher to read the sandbox a few times (a watcher that cannot would enforce nothing).
 */
const SELF_CHECK: Record<SandboxLanguage, string> = {
  python: "import time\ntime.sleep(0.1)\nprint(6 * 7)",
  javascript: "setTimeout(() => console.log(6 * 7), 100);",
};
const SELF_CHECK_MS = 10_000;
/** A failed self-check is remembered this long, then tried again (bwrap may have been installed). */
const RECHECK_AFTER_MS = 30_000;
/** The user and group a candidate is inside the sandbox: nobody, mapped to bwrap's user outside. */
const INSIDE_ID = "65534";
const MiB = 1024 * 1024;
/** Files a candidate may hold open. */
const MAX_OPEN_FILES = 256;
/** Sandbox directories the verifier's earlier, bwrap-less versions left in the temp dir when killed. */
const LEGACY_TMP_PREFIX = "specloop-sandbox-";

export class Sandbox {
  readonly slots: Slots;
  private readonly ready = new Map<SandboxLanguage, { at: number; interpreter: Promise<Interpreter> }>();
  private tools: { bwrap: string; prlimit: string } | undefined;

  constructor(private readonly options: SandboxOptions) {
    this.slots = new Slots(options.maxSandboxes);
  }

  /** bwrap's user outside: the configured one when the verifier is root, else the verifier's own. */
  get user(): ProbeUser | undefined {
    return process.getuid?.() === 0 ? this.options.user : undefined;
  }

  /**
   * Holds one of the verifier's sandbox slots while `fn` runs (a candidate's test cases run in one slot,
   * one after the other). Waiting ends early when the signal aborts.
   */
  async withSlot<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    const release = await this.slots.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Runs code once in a fresh sandbox. The caller holds a slot (withSlot). */
  async run(request: RunRequest): Promise<RunResult> {
    const interpreter = await this.interpreter(request.language);
    return runOnce(this.spec(interpreter, request));
  }

  /**
   * The interpreter for a language, once a trivial program ran in a sandbox at the language's smallest
   * memory limit; SandboxUnavailableError (FAILED_PRECONDITION) when this machine cannot do that.
   */
  interpreter(language: SandboxLanguage): Promise<Interpreter> {
    const cached = this.ready.get(language);
    if (cached !== undefined) return cached.interpreter;
    const interpreter = this.check(language);
    const entry = { at: Date.now(), interpreter };
    this.ready.set(language, entry);
    interpreter.catch(() => {
      setTimeout(() => {
        if (this.ready.get(language) === entry) this.ready.delete(language);
      }, RECHECK_AFTER_MS).unref();
    });
    return interpreter;
  }

  private async check(language: SandboxLanguage): Promise<Interpreter> {
    const tools = this.findTools();
    const interpreter = language === "python" ? python(this.options.python, this.user) : javascript();
    interpreter.plan.expose(tools.prlimit);
    for (const lib of sharedLibraries([tools.prlimit])) interpreter.plan.expose(lib);
    let result: RunResult;
    try {
      result = await runOnce(
        this.spec(interpreter, {
          language,
          code: SELF_CHECK[language],
          stdin: "",
          timeLimitMs: SELF_CHECK_MS,
          memoryLimitMb: MIN_MEMORY_MB[language],
        }),
      );
    } catch (err) {
      throw new SandboxUnavailableError(
        `tests judge: this machine cannot run the ${language} sandbox (bubblewrap needs user namespaces): ` +
          (err instanceof Error ? err.message : String(err)),
        { cause: err },
      );
    }
    if (result.outcome !== "exited" || result.exitCode !== 0 || result.stdout.trim() !== "42") {
      throw new SandboxUnavailableError(
        `tests judge: the ${language} sandbox's self-check failed (${result.outcome}, exit ${result.exitCode}): ` +
          result.stderr.trim().slice(0, 500),
      );
    }
    if (result.peakMemoryBytes === 0) {
      throw new SandboxUnavailableError(
        "tests judge: the verifier cannot read its sandboxes' memory (/proc/<pid>/root/proc), so it could not " +
          "enforce the memory limit",
      );
    }
    return interpreter;
  }

  private findTools(): { bwrap: string; prlimit: string } {
    if (this.tools !== undefined) return this.tools;
    const bwrap = findOnPath(this.options.bwrap);
    if (bwrap === undefined) {
      throw new SandboxUnavailableError(
        `tests judge: bubblewrap (${this.options.bwrap}) is not installed; the tests judge needs it`,
      );
    }
    const prlimit = findOnPath("prlimit");
    if (prlimit === undefined) {
      throw new SandboxUnavailableError("tests judge: prlimit (util-linux) is not installed");
    }
    this.tools = { bwrap, prlimit };
    return this.tools;
  }

  private spec(interpreter: Interpreter, request: RunRequest): Parameters<typeof runOnce>[0] {
    const { bwrap, prlimit } = this.findTools();
    const o = this.options;
    const tmpfsBytes = o.tmpfsMb * MiB;
    const limits = [
      `--as=${interpreter.addressSpaceBytes(request.memoryLimitMb)}`,
      `--fsize=${tmpfsBytes}`,
      `--nproc=${interpreter.baseTasks + o.maxProcesses}`,
      `--nofile=${MAX_OPEN_FILES}`,
      `--cpu=${Math.ceil(request.timeLimitMs / 1000) + 1}`,
      "--core=0",
    ];
    const args = [
      "--unshare-all",
      "--unshare-user",
      "--disable-userns",
      "--uid",
      INSIDE_ID,
      "--gid",
      INSIDE_ID,
      "--hostname",
      "sandbox",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      "--clearenv",
      ...Object.entries(SANDBOX_ENV).flatMap(([k, v]) => ["--setenv", k, v]),
      ...interpreter.plan.mounts().flatMap(mountArgs),
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--size",
      String(tmpfsBytes),
      "--perms",
      "1777",
      "--tmpfs",
      "/tmp",
      "--perms",
      "0444",
      "--ro-bind-data",
      "3",
      interpreter.file,
      "--remount-ro",
      "/dev",
      "--remount-ro",
      "/",
      "--chdir",
      "/tmp",
      "--json-status-fd",
      "4",
      "--",
      prlimit,
      ...limits,
      "--",
      ...interpreter.argv(request.memoryLimitMb),
    ];
    return {
      bwrap,
      args,
      code: request.code,
      stdin: request.stdin,
      timeLimitMs: request.timeLimitMs,
      memoryLimitBytes: request.memoryLimitMb * MiB,
      maxOutputBytes: o.maxOutputBytes,
      ...(this.user !== undefined ? { user: this.user } : {}),
      ...(request.signal !== undefined ? { signal: request.signal } : {}),
    };
  }
}

/** The whole environment a candidate gets. */
const SANDBOX_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/bin:/bin",
  HOME: "/tmp",
  TMPDIR: "/tmp",
  LANG: "C.UTF-8",
  // glibc's per-thread arenas reserve 64 MiB of address space each; two keep Node's threads inside RLIMIT_AS.
  MALLOC_ARENA_MAX: "2",
};

function mountArgs(m: Mount): string[] {
  return m.kind === "bind" ? ["--ro-bind", m.path, m.path] : ["--symlink", m.target, m.path];
}

/** Removes sandbox directories that bwrap-less verifiers left in the temp dir; returns how many. */
export function removeLegacySandboxDirs(dir = tmpdir()): number {
  let removed = 0;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(LEGACY_TMP_PREFIX)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}
