#!/usr/bin/env node
// `npm start`: the whole system on this machine, on the bundled model, and a live demo of the loop.
//   1. a NATS server with JetStream (its store under .data/nats) and auth on, unless SPECLOOP_BUS__URLS
//      names one: one nkey user per role, credentials and the manifest signing key made once under
//      .data/bus (0600, see @specloop/bus writeLocalBus), streams provisioned with the admin credential;
//      each service gets its role's credential, the node the trainer's public key, the trainer its
//      private key, and every service a spool directory under .data/spool (a node's under its node id);
//   2. the speculator-trainer, --nodes inference nodes (node-1, node-2, ...) and the verifier, from their
//      built dist/ (npm start builds first), each on its own gRPC and metrics port, state under .data/;
//      the cores are shared out: one thread for the trainer, the rest split between the nodes;
//   3. waits until every service reports SERVING and prints where they are; then, unless --no-demo, runs
//      the demo (cli/src/demo: a workload over the nodes whose domain shifts, and a live view per
//      speculator version), with the services' logs in .data/logs/ so they do not break the view;
//   4. on Ctrl-C (SIGINT) or SIGTERM: the demo stops first, then the services drain, then NATS stops. If
//      any process dies, everything is stopped.
// Flags: --nodes N (2), --no-demo, --phase N (demo requests per domain, 300), --report S (seconds between
// the demo's reports when stdout is not a terminal, 10).
// Ports: SPECLOOP_START_GRPC_PORT (first of a block: node-1, trainer, verifier, node-2, node-3, ...;
// 50051), SPECLOOP_START_METRICS_PORT (the same block for metrics; 9461), SPECLOOP_START_NATS_PORT (4250);
// the data dir: SPECLOOP_DATA_DIR (.data). Other SPECLOOP_* variables reach the services (docs/CONFIG.md).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checkHealth, runDemo } from "../cli/dist/index.js";
import { provisionLocalBus, writeLocalBus } from "../shared/bus/dist/index.js";

function usage(message) {
  console.error(`npm start: ${message}`);
  console.error("usage: npm start [-- --nodes N] [--no-demo] [--phase REQUESTS] [--report SECONDS]");
  process.exit(2);
}

let flags;
try {
  flags = parseArgs({
    options: {
      nodes: { type: "string", default: "2" },
      "no-demo": { type: "boolean", default: false },
      phase: { type: "string", default: "300" },
      report: { type: "string", default: "10" },
    },
  }).values;
} catch (err) {
  usage(err.message);
}
const positive = (name) => {
  const n = Number(flags[name]);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} ${flags[name]}: expected a whole number >= 1`);
  return n;
};
const nodeCount = positive("nodes");
const phaseRequests = positive("phase");
const reportSeconds = positive("report");
const demo = !flags["no-demo"];

const root = new URL("..", import.meta.url).pathname;
const dataDir = process.env.SPECLOOP_DATA_DIR ?? join(root, ".data");
const host = "127.0.0.1";
const natsPort = Number(process.env.SPECLOOP_START_NATS_PORT ?? 4250);
const grpcBase = Number(process.env.SPECLOOP_START_GRPC_PORT ?? 50051);
const metricsBase = Number(process.env.SPECLOOP_START_METRICS_PORT ?? 9461);
const externalNats = process.env.SPECLOOP_BUS__URLS;
const natsUrl = externalNats ?? `nats://${host}:${natsPort}`;
const modelDir = join(root, "models/tiny-code");
const logDir = join(dataDir, "logs");

// One core learns (the trainer), the rest serve, split evenly between the nodes (at least one thread each).
const TRAINER_THREADS = 1;
const nodeThreads = Math.max(1, Math.floor((availableParallelism() - TRAINER_THREADS) / nodeCount));

// The block of ports: node-1 first (the CLI's default inference address), the trainer and the verifier
// next (the CLI's default trainer address), then the other nodes.
const slot = (i) => ({ grpcPort: grpcBase + i, metricsPort: metricsBase + i });
const nodes = Array.from({ length: nodeCount }, (_, i) => ({
  name: `node-${i + 1}`,
  role: "node",
  dir: "inference",
  ...slot(i === 0 ? 0 : i + 2),
  env: {
    SPECLOOP_NODE__ID: `node-${i + 1}`,
    SPECLOOP_NODE__MODEL_DIR: modelDir,
    SPECLOOP_NODE__CPU_THREADS: process.env.SPECLOOP_NODE__CPU_THREADS ?? String(nodeThreads),
    SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: join(root, "models/tiny-code-draft"),
  },
}));
const trainer = {
  name: "speculator-trainer",
  role: "trainer",
  dir: "speculator-trainer",
  ...slot(1),
  env: {
    SPECLOOP_STORE__PATH: join(dataDir, "speculator-trainer.sqlite"),
    SPECLOOP_SERVER__AUTH__TOKENS_FILE: join(dataDir, "trainer-tokens.yaml"),
    SPECLOOP_TRAINER__MODEL_DIR: modelDir,
    SPECLOOP_TRAINER__CPU_THREADS: String(TRAINER_THREADS),
    // The demo wants the gate's decisions within minutes: fewer requests per arm before deciding, and a
    // canary still undecided after three minutes is retired (the defaults: 30 requests, 30 minutes).
    ...(demo
      ? {
          SPECLOOP_GATE__MIN_SAMPLES: process.env.SPECLOOP_GATE__MIN_SAMPLES ?? "12",
          SPECLOOP_GATE__TIMEOUT_MS: process.env.SPECLOOP_GATE__TIMEOUT_MS ?? "180000",
        }
      : {}),
  },
};
const verifier = {
  name: "verifier",
  role: "verifier",
  dir: "verifier",
  ...slot(2),
  env: {
    SPECLOOP_STORE__PATH: join(dataDir, "verifier.sqlite"),
    SPECLOOP_SERVER__AUTH__TOKENS_FILE: join(dataDir, "verifier-tokens.yaml"),
  },
};
// Started in this order: the trainer first (it publishes the day-0 head the nodes load), the verifier last.
const SERVICES = [trainer, ...nodes, verifier];

const children = [];
let stopping = false;
const demoStop = new AbortController();
let demoDone = Promise.resolve();

function prefixed(name, stream, out) {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) out.write(`[${name}] ${line}\n`);
  });
}

function logFile(name) {
  return join(logDir, `${name}.log`);
}

function launch(name, command, args, env) {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: a Ctrl-C in the terminal reaches this launcher only, which stops the
    // processes in order (a shared group would stop NATS before the services have drained).
    detached: true,
  });
  // With the demo on, a service's output goes to its log file (the view owns the terminal); without it,
  // to this terminal, each line prefixed with the service's name.
  if (demo) {
    const log = createWriteStream(logFile(name), { flags: "a" });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
  } else {
    prefixed(name, child.stdout, process.stdout);
    prefixed(name, child.stderr, process.stderr);
  }
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const entry = { name, child, exited, gone: false };
  children.push(entry);
  exited.then((how) => {
    entry.gone = true;
    if (!stopping) {
      console.error(`specloop: ${name} exited (${how}); stopping everything`);
      if (demo) printLogTail(name);
      shutdown(1);
    }
  });
  child.once("error", (err) => {
    console.error(`specloop: cannot run ${command} for ${name}: ${err.message}`);
    shutdown(1);
  });
  return entry;
}

function printLogTail(name) {
  try {
    const lines = readFileSync(logFile(name), "utf8").trimEnd().split("\n").slice(-20);
    console.error(`specloop: the end of ${logFile(name)}:`);
    for (const line of lines) console.error(`  ${line}`);
  } catch {
    // No log yet.
  }
}

// Whatever ends this process, no child outlives it (they are in their own process groups).
process.on("exit", () => {
  for (const c of children) if (!c.gone) c.child.kill("SIGKILL");
});

async function waitFor(what, probe, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (!stopping) {
    if (await probe()) return;
    if (Date.now() > until) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // Stopping (Ctrl-C while starting): start nothing more; shutdown() ends the process.
  await new Promise(() => undefined);
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  // The demo first (no new requests; those in flight finish), then the services (they drain in-flight
  // calls and flush their traces to NATS), NATS last.
  // The demo says when it has stopped (on a terminal it owns the screen until then).
  demoStop.abort();
  await demoDone.catch(() => undefined);
  const services = children.filter((c) => c.name !== "nats");
  console.log(`specloop: draining the services (${services.map((c) => c.name).join(", ")})`);
  for (const c of services) if (!c.gone) c.child.kill("SIGTERM");
  await Promise.all(services.map((c) => c.exited));
  for (const c of children.filter((c) => c.name === "nats")) {
    console.log("specloop: stopping NATS");
    if (!c.gone) c.child.kill("SIGTERM");
    await c.exited;
  }
  console.log("specloop: stopped");
  process.exit(code);
}

process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

mkdirSync(dataDir, { recursive: true });
if (demo) mkdirSync(logDir, { recursive: true });
// The verifier's tests judge runs code and takes only calls with a token (run-code role): one is made once,
// kept in the data dir (0600); send it as "authorization: Bearer <token>".
const verifierTokens = join(dataDir, "verifier-tokens.yaml");
if (!existsSync(verifierTokens)) {
  const token = randomBytes(32).toString("base64url");
  writeFileSync(verifierTokens, `- identity: local\n  roles: [run-code]\n  token: ${token}\n`, {
    mode: 0o600,
  });
}
// The trainer's admin RPCs (promote, rollback, pin, pause, config) take only calls with its admin token, made
// the same way; the CLI reads it from SPECLOOP_ADMIN_TOKEN.
const trainerTokens = join(dataDir, "trainer-tokens.yaml");
if (!existsSync(trainerTokens)) {
  const token = randomBytes(32).toString("base64url");
  writeFileSync(trainerTokens, `- identity: local-admin\n  roles: [admin]\n  token: ${token}\n`, {
    mode: 0o600,
  });
}
// With an external NATS, its credentials are the operator's business (SPECLOOP_BUS__CREDENTIALS_FILE);
// the manifest signing key is still made here, so the node trusts what the trainer signs.
const bus = writeLocalBus({ dataDir, host, port: natsPort });
if (externalNats === undefined) {
  const nats = launch(
    "nats",
    "nats-server",
    ["-c", bus.serverConfigFile, "-js", "-a", host, "-p", String(natsPort), "-sd", bus.storeDir],
    {},
  );
  let ready = false;
  nats.child.stderr.on("data", (d) => {
    if (String(d).includes("Server is ready")) ready = true;
  });
  try {
    await waitFor("nats-server", async () => ready, 15_000);
    await provisionLocalBus(bus);
  } catch (err) {
    console.error(`specloop: cannot start NATS: ${err.message}`);
    if (demo) printLogTail("nats");
    await shutdown(1);
  }
}

function launchService(svc) {
  const busEnv = bus.env(svc.role);
  if (externalNats !== undefined) delete busEnv.SPECLOOP_BUS__CREDENTIALS_FILE;
  launch(svc.name, process.execPath, [join(root, "services", svc.dir, "dist/main.js")], {
    SPECLOOP_SERVER__HOST: process.env.SPECLOOP_SERVER__HOST ?? host,
    SPECLOOP_SERVER__GRPC_PORT: String(svc.grpcPort),
    SPECLOOP_SERVER__METRICS_PORT: String(svc.metricsPort),
    SPECLOOP_BUS__URLS: natsUrl,
    ...busEnv,
    ...svc.env,
  });
}

function serving(svc) {
  const server = `${host}:${svc.grpcPort}`;
  return waitFor(
    svc.name,
    () =>
      checkHealth({ server, service: "", timeoutMs: 1000 }).then(
        (h) => h.status === "SERVING",
        () => false,
      ),
    120_000,
  );
}

try {
  // The trainer first, serving before any node starts: by then it has published the day-0 head or, after
  // a restart, announced its live and canary versions again, so a node's first look at the registry finds
  // them settled.
  launchService(trainer);
  await serving(trainer);
  for (const svc of [...nodes, verifier]) launchService(svc);
  for (const svc of [...nodes, verifier]) await serving(svc);
} catch (err) {
  console.error(`specloop: ${err.message}`);
  await shutdown(1);
}
const pidOf = (name) => children.find((c) => c.name === name)?.child.pid;
console.log(
  `\nspecloop is up (NATS ${natsUrl}${externalNats ? "" : `, started here, pid ${pidOf("nats")}`}):`,
);
for (const svc of SERVICES) {
  const threads = svc.role === "node" ? `, ${svc.env.SPECLOOP_NODE__CPU_THREADS} cpu thread(s)` : "";
  console.log(
    `  ${svc.name.padEnd(20)} grpc ${host}:${svc.grpcPort}  metrics http://${host}:${svc.metricsPort}/metrics` +
      `  pid ${pidOf(svc.name)}${threads}`,
  );
}
if (demo) console.log(`  their logs: ${logDir}/<name>.log`);
console.log(`  the verifier's tests judge needs the token in ${verifierTokens}`);
console.log(`  the trainer's admin RPCs need the token in ${trainerTokens}`);
if (externalNats === undefined) {
  console.log(
    `  NATS needs a credential: read-only status with ${bus.credentials.credentialsFile("operator")}`,
  );
}
console.log("  for the admin CLI (README), in another shell:");
if (externalNats === undefined) {
  console.log(`    export SPECLOOP_NATS_CREDS=${bus.credentials.credentialsFile("operator")}`);
}
console.log(`    export SPECLOOP_ADMIN_TOKEN_FILE=${trainerTokens}`);
if (grpcBase !== 50051) {
  console.log(`    export SPECLOOP_INFERENCE_ADDRESS=${host}:${nodes[0].grpcPort}`);
  console.log(`    export SPECLOOP_TRAINER_ADDRESS=${host}:${trainer.grpcPort}`);
}
console.log("    npx specloop status; npx specloop versions list; npx specloop trainer status");
console.log("Ctrl-C stops everything.\n");

if (demo && !stopping) {
  demoDone = runDemo(
    {
      nodes: nodes.map((n) => ({ id: n.name, address: `${host}:${n.grpcPort}` })),
      trainer: { trainer: `${host}:${trainer.grpcPort}`, tokenFile: trainerTokens, timeout: 15_000 },
      modelDir,
      stateFile: join(dataDir, "demo.json"),
      phaseRequests,
      concurrencyPerNode: 2,
      maxTokens: 48,
      promptChars: 240,
      reportEveryMs: reportSeconds * 1000,
      // A version every 4 training steps, canaried on half the eagle traffic, and the learning rate
      // bench/closed-loop.ts learned with: versions and decisions within minutes.
      trainerConfig: ["publish_every_steps=4", "canary_share=0.5", "learning_rate=0.001"],
      out: process.stdout,
    },
    demoStop.signal,
  ).catch((err) => {
    console.error(`specloop: the demo failed: ${err.stack ?? err.message}`);
    shutdown(1);
  });
}
