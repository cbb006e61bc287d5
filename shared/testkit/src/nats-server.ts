// A real nats-server for tests: JetStream on, bound to 127.0.0.1 on a free port, its store in a fresh
// temp dir. Every process started here is killed when the test process exits, even when a test
// failed before its after-hook could run. Auth is on when the config says so: pass an `authorization`
// block in `config` (what @specloop/bus's writeBusCredentials writes; its testing entry does this), or a
// whole `configFile` that includes one (npm start's, from writeLocalBus).
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { tempDir } from "./tempdir.js";

export interface NatsServerOptions {
  /** Port to bind; a free one is picked when omitted (and re-picked if it was taken meanwhile). */
  port?: number;
  /**
   * Extra nats-server configuration (its own config syntax), e.g. `max_payload: 65536`, or an
   * `authorization { users = [...] }` block to turn auth on.
   */
  config?: string;
  /**
   * A config file to run with instead of one written from `config` (its `include`s resolve against its
   * own directory). The port, address and store directory flags still win over what it says.
   */
  configFile?: string;
  /** Executable to run; `nats-server` from PATH by default. */
  binary?: string;
  /** How long to wait for the server to accept connections, milliseconds. */
  startTimeoutMs?: number;
}

export interface NatsServer {
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** JetStream store directory; kept across restart(), removed by stop(). */
  readonly storeDir: string;
  /** Kills the server (if running) and removes its temp dir. Safe to call twice. */
  stop(): Promise<void>;
  /** Stops the process and starts it again on the same port with the same store. */
  restart(): Promise<void>;
  /** Stops the process only, keeping the store (to test clients while the server is away). */
  kill(): Promise<void>;
  /** Starts the process again after kill(), on the same port with the same store. */
  start(): Promise<void>;
  /** The last lines the server logged, for assertion messages. */
  log(): string;
}

const HOST = "127.0.0.1";
const DEFAULT_START_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
const LOG_LINES = 50;
const PORT_ATTEMPTS = 5;

/** Starts nats-server with JetStream and waits until it accepts TCP connections. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const dir = tempDir("specloop-nats");
  try {
    const storeDir = join(dir.path, "jetstream");
    let configFile = options.configFile;
    if (configFile === undefined) {
      configFile = join(dir.path, "server.conf");
      writeFileSync(configFile, options.config ?? "");
    }
    const log: string[] = [];
    const timeout = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const binary = options.binary ?? "nats-server";
    let port = options.port ?? (await freePort());
    let child: ChildProcess | undefined = await launch(
      binary,
      port,
      storeDir,
      configFile,
      log,
      timeout,
    ).catch(async (err) => {
      // A picked port can be taken between freePort() and the bind: pick another, a few times.
      if (options.port !== undefined) throw err;
      for (let attempt = 1; ; attempt++) {
        port = await freePort();
        try {
          return await launch(binary, port, storeDir, configFile, log, timeout);
        } catch (retryErr) {
          if (attempt >= PORT_ATTEMPTS) throw retryErr;
        }
      }
    });
    let stopped = false;
    const kill = async () => {
      if (child) await terminate(child);
      child = undefined;
    };
    const start = async () => {
      if (stopped) throw new Error("nats-server: start() after stop()");
      if (child) return;
      child = await launch(binary, port, storeDir, configFile, log, timeout);
    };
    return {
      url: `nats://${HOST}:${port}`,
      port,
      storeDir,
      kill,
      start,
      async restart() {
        await kill();
        await start();
      },
      async stop() {
        stopped = true;
        await kill();
        dir.dispose();
      },
      log: () => log.join("\n"),
    };
  } catch (err) {
    dir.dispose();
    throw err;
  }
}

const live = new Set<ChildProcess>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const killAll = () => {
    for (const child of live) child.kill("SIGKILL");
    live.clear();
  };
  process.once("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      killAll();
      // Re-raise so the process still dies the way the sender asked.
      process.kill(process.pid, signal);
    });
  }
}

async function launch(
  binary: string,
  port: number,
  storeDir: string,
  configFile: string,
  log: string[],
  timeoutMs: number,
): Promise<ChildProcess> {
  installExitHooks();
  const args = ["-c", configFile, "-js", "-a", HOST, "-p", String(port), "-sd", storeDir];
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
  live.add(child);
  // Ready means this process said so: a TCP accept alone could come from another server that already
  // holds the port (the case where this one is about to fail with "address already in use").
  let ready = false;
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    if (chunk.includes("Server is ready")) ready = true;
    log.push(...chunk.split("\n").filter((line) => line.length > 0));
    if (log.length > LOG_LINES) log.splice(0, log.length - LOG_LINES);
  });
  let exited: string | undefined;
  child.once("exit", (code, signal) => {
    live.delete(child);
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once("error", (err) => {
    exited = `failed to start: ${err.message}`;
  });
  const deadline = Date.now() + timeoutMs;
  while (!(ready && (await accepts(port)))) {
    if (exited !== undefined || Date.now() > deadline) {
      await terminate(child);
      const why = exited ?? `not accepting connections after ${timeoutMs} ms`;
      throw new Error(`nats-server on port ${port} ${why}:\n${log.join("\n")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: HOST, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** SIGTERM (nats-server shuts down cleanly, flushing its store), SIGKILL after a grace period. */
async function terminate(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
