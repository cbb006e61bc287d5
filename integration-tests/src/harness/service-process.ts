// A specloop service as a real child process, started from its TypeScript source (through tsx with the
// "source" export condition, as the test runner does), on a free gRPC port, with its output kept for
// assertions and its health polled until it is SERVING.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { checkHealth } from "@specloop/cli";
import { freePort } from "@specloop/testkit";

export type ServiceName = "inference" | "speculator-trainer" | "verifier";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export function serviceMain(name: ServiceName): string {
  return fileURLToPath(new URL(`../../../services/${name}/src/main.ts`, import.meta.url));
}

export interface ServiceProcess {
  readonly address: string;
  readonly child: ChildProcess;
  /** Everything the process wrote so far. */
  output(): { stdout: string; stderr: string };
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  /** Wait until health says SERVING; default true. */
  waitServing?: boolean;
  timeoutMs?: number;
}

export async function spawnService(name: ServiceName, options: SpawnOptions = {}): Promise<ServiceProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", serviceMain(name)], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      SPECLOOP_SERVER__HOST: "127.0.0.1",
      SPECLOOP_SERVER__GRPC_PORT: String(port),
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => {
    stdout += d;
  });
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const address = `127.0.0.1:${port}`;
  const proc: ServiceProcess = {
    address,
    child,
    output: () => ({ stdout, stderr }),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
  if (options.waitServing !== false) await waitServing(proc, options.timeoutMs ?? 30_000);
  return proc;
}

async function waitServing(proc: ServiceProcess, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void proc.exited.then((code) => {
    exitCode = code;
  });
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(`service exited with ${exitCode} before serving: ${proc.output().stderr}`);
    }
    try {
      const health = await checkHealth({ server: proc.address, service: "", timeoutMs: 1_000 });
      if (health.status === "SERVING") return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) {
      proc.child.kill("SIGKILL");
      throw new Error(
        `service at ${proc.address} not SERVING after ${timeoutMs} ms: ${proc.output().stderr}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
