// Runs the `specloop` CLI as a real process from its TypeScript source, for the CLI's own tests and the
// integration tests. `env` is added to this process's environment (a value of undefined removes the
// variable, so a test is not steered by an operator's SPECLOOP_* settings).
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
}

export interface RunningCli {
  readonly child: ChildProcess;
  /** What it wrote so far. */
  output(): { stdout: string; stderr: string };
  /** Settles when it exits. */
  readonly done: Promise<CliRun>;
}

function environment(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith("SPECLOOP_")) delete env[key];
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/** Starts the CLI and returns at once (for commands that run until stopped, such as traces tail). */
export function startCli(args: string[], options: CliOptions = {}): RunningCli {
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", MAIN, ...args], {
    env: environment(options.env),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += d;
  });
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const done = new Promise<CliRun>((resolve) => {
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  return { child, output: () => ({ stdout, stderr }), done };
}

export function runCli(args: string[], options: CliOptions = {}): Promise<CliRun> {
  return startCli(args, options).done;
}
