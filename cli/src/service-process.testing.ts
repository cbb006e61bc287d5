// A specloop service as a real child process for the CLI's tests: started from its TypeScript source
// (tsx, "source" export condition) on a free gRPC port of loopback, polled until its health says SERVING.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { freePort } from "@specloop/testkit";
import { checkHealth } from "./commands/health.js";

export type ServiceName = "inference" | "speculator-trainer";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface ServiceProcess {
  readonly address: string;
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM (or the signal given); resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function spawnService(
  name: ServiceName,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ServiceProcess> {
  const port = await freePort();
  const main = fileURLToPath(new URL(`../../services/${name}/src/main.ts`, import.meta.url));
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", main], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      SPECLOOP_SERVER__HOST: "127.0.0.1",
      SPECLOOP_SERVER__GRPC_PORT: String(port),
      SPECLOOP_LOG__LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d) => {
    output += d;
  });
  child.stderr?.on("data", (d) => {
    output += d;
  });
  const exited = once(child, "exit");
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const proc: ServiceProcess = {
    address: `127.0.0.1:${port}`,
    child,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (!gone) child.kill(signal);
      await exited;
    },
  };
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(`${name} exited before serving:\n${output}`);
    const serving = await checkHealth({ server: proc.address, service: "", timeoutMs: 1_000 }).then(
      (h) => h.status === "SERVING",
      () => false,
    );
    if (serving) return proc;
    if (Date.now() > until) {
      await proc.stop("SIGKILL");
      throw new Error(`${name} at ${proc.address} not SERVING after ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
