// The interpreters a candidate can be written for, and what each needs inside the sandbox: its executable,
// its standard library and their shared libraries (exposed read-only), its command line, how much address
// space it must reserve beyond the memory limit, and how many tasks (threads count) it starts on its own.
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { SandboxUnavailableError } from "../errors.js";
import { MountPlan, sharedLibraries, sharedObjectsIn } from "./layout.js";

export const SANDBOX_LANGUAGES = ["python", "javascript"] as const;
export type SandboxLanguage = (typeof SANDBOX_LANGUAGES)[number];

/** The smallest memory limit each interpreter starts under (the self-check runs at this limit). */
export const MIN_MEMORY_MB: Readonly<Record<SandboxLanguage, number>> = { python: 32, javascript: 64 };

export interface Interpreter {
  language: SandboxLanguage;
  /** Where the candidate's code is bound (read-only) inside the sandbox. */
  file: string;
  /** The interpreter's command line for a memory limit. */
  argv(memoryLimitMb: number): string[];
  /** RLIMIT_AS for a memory limit: Python gets exactly it; V8 reserves ~0.7 GiB it never touches. */
  addressSpaceBytes(memoryLimitMb: number): number;
  /** Tasks (processes and threads) the interpreter starts on its own, plus the sandbox's PID 1. */
  baseTasks: number;
  /** Host paths the sandbox must see. */
  plan: MountPlan;
}

const MiB = 1024 * 1024;
/** Address space Node reserves beyond its heap (measured: 687 MiB VmSize at start, Node 20, x86_64). */
const NODE_RESERVED_MB = 1024;

export interface ProbeUser {
  uid: number;
  gid: number;
}

/** Finds `name` on PATH the way execvp would (an absolute or relative path is taken as is). */
export function findOnPath(name: string, path = process.env.PATH ?? "/usr/bin:/bin"): string | undefined {
  if (name.includes("/")) return existsSync(name) ? realpathSync(name) : undefined;
  for (const dir of path.split(":")) {
    if (dir === "") continue;
    const candidate = `${dir}/${name}`;
    if (existsSync(candidate)) return realpathSync(candidate);
  }
  return undefined;
}

const PYTHON_PROBE =
  "import json, os, sys, sysconfig; print(json.dumps({'executable': os.path.realpath(sys.executable), " +
  "'dirs': [sysconfig.get_path('stdlib'), sysconfig.get_path('platstdlib')] + " +
  "[p for p in sys.path if p.endswith('lib-dynload')]}))";

/**
 * Python as the sandbox's user finds it: `python` resolved on PATH by that user (a root-only interpreter
 * under /root is skipped for one that user can run), its standard library and lib-dynload, and the shared
 * libraries of the executable and of every extension module there.
 */
export function python(command: string, user: ProbeUser | undefined): Interpreter {
  const out = spawnSync(command, ["-I", "-c", PYTHON_PROBE], {
    encoding: "utf8",
    timeout: 15_000,
    cwd: "/",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    ...(user ?? {}),
  });
  if (out.error !== undefined || out.status !== 0) {
    const why = out.error?.message ?? out.stderr.trim().split("\n").at(-1) ?? `exit ${out.status}`;
    throw new SandboxUnavailableError(
      `tests judge: cannot run the Python interpreter "${command}"${user ? ` as uid ${user.uid}` : ""}: ${why}`,
    );
  }
  const probe = JSON.parse(out.stdout) as { executable: string; dirs: string[] };
  const plan = new MountPlan().expose(probe.executable);
  const dirs = [...new Set(probe.dirs)].filter((d) => existsSync(d));
  for (const d of dirs) plan.expose(d);
  const objects = dirs.flatMap(sharedObjectsIn);
  for (const lib of sharedLibraries([probe.executable, ...objects])) plan.expose(lib);
  return {
    language: "python",
    file: "/sandbox/main.py",
    // -I: no user site, no PYTHON* variables, no script directory tricks; -B: the library is read-only.
    argv: () => [probe.executable, "-I", "-B", "-X", "utf8", "/sandbox/main.py"],
    addressSpaceBytes: (mb) => mb * MiB,
    baseTasks: 2,
    plan,
  };
}

/** Node: the verifier's own executable, with a heap limit, one V8 worker and the libraries it loads. */
export function javascript(): Interpreter {
  const executable = realpathSync(process.execPath);
  const plan = new MountPlan().expose(executable);
  for (const lib of sharedLibraries([executable])) plan.expose(lib);
  return {
    language: "javascript",
    file: "/sandbox/main.mjs",
    argv: (mb) => [executable, `--max-old-space-size=${mb}`, "--v8-pool-size=1", "/sandbox/main.mjs"],
    addressSpaceBytes: (mb) => (mb + NODE_RESERVED_MB) * MiB,
    // main thread, the V8 worker, libuv's pool of 4 and its signal/inspector threads, and PID 1.
    baseTasks: 10,
    plan,
  };
}
