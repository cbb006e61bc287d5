// Runs untrusted candidate code: a child process in its own empty network namespace (`unshare -rn`: no
// interfaces but loopback, so no network), its own process group (killed whole at the time limit), an
// address-space limit for Python (prlimit) or a heap limit for Node, a fresh temporary directory as its
// working directory, an environment holding only PATH, and capped output.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FailedPreconditionError } from "@specloop/runtime";

export const SANDBOX_LANGUAGES = ["python", "javascript"] as const;
export type SandboxLanguage = (typeof SANDBOX_LANGUAGES)[number];

/** Output past this is cut off (and the run fails): a candidate cannot flood the verifier's memory. */
export const MAX_OUTPUT_BYTES = 1 << 20;

export interface SandboxOptions {
  language: SandboxLanguage;
  code: string;
  stdin: string;
  timeLimitMs: number;
  memoryLimitMb: number;
  python: string;
  signal?: AbortSignal;
}

export interface SandboxRun {
  stdout: string;
  exitCode: number | null;
  /** Killed at the time limit. */
  timedOut: boolean;
  /** Output passed MAX_OUTPUT_BYTES. */
  truncated: boolean;
}

let isolation: boolean | undefined;

/** Whether this machine lets an unprivileged process drop its network (checked once). */
export function canIsolateNetwork(): boolean {
  isolation ??= spawnSync("unshare", ["-rn", "true"], { stdio: "ignore", timeout: 5_000 }).status === 0;
  return isolation;
}

export async function runSandboxed(options: SandboxOptions): Promise<SandboxRun> {
  if (!canIsolateNetwork()) {
    throw new FailedPreconditionError(
      "tests judge: this machine cannot run code without network (unshare -rn is not permitted)",
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "specloop-sandbox-"));
  try {
    const file = join(dir, options.language === "python" ? "main.py" : "main.mjs");
    writeFileSync(file, options.code);
    const bytes = options.memoryLimitMb * 1024 * 1024;
    // V8 reserves far more address space than it uses, so Node gets a heap limit instead of RLIMIT_AS.
    const command =
      options.language === "python"
        ? ["prlimit", `--as=${bytes}`, options.python, "-I", file]
        : [process.execPath, `--max-old-space-size=${options.memoryLimitMb}`, file];
    return await run(["-rn", ...command], dir, options);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(args: string[], cwd: string, options: SandboxOptions): Promise<SandboxRun> {
  return new Promise((resolve, reject) => {
    const child = spawn("unshare", args, {
      cwd,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "ignore"],
      detached: true,
    });
    let stdout = Buffer.alloc(0);
    let timedOut = false;
    let truncated = false;
    const kill = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeLimitMs);
    const onAbort = (): void => kill();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (d: Buffer) => {
      if (stdout.length + d.length > MAX_OUTPUT_BYTES) {
        truncated = true;
        kill();
        return;
      }
      stdout = Buffer.concat([stdout, d]);
    });
    // A candidate that exits without reading its input closes the pipe; that is not the verifier's error.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.stdin);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({ stdout: stdout.toString("utf8"), exitCode: code, timedOut, truncated });
    });
  });
}
