#!/usr/bin/env node
// `npm start`: the whole system on this machine, on the bundled model.
//   1. a NATS server with JetStream (its store under .data/nats) and auth on, unless SPECLOOP_BUS__URLS
//      names one: one nkey user per role, credentials and the manifest signing key made once under
//      .data/bus (0600, see @specloop/bus writeLocalBus), streams provisioned with the admin credential;
//      each service gets its role's credential, the node the trainer's public key, the trainer its
//      private key, and every service a spool directory under .data/spool;
//   2. the inference node, the speculator-trainer and the verifier, from their built dist/ (npm start
//      builds first), each on its own gRPC and metrics port, state under .data/;
//   3. waits until every service reports SERVING, prints where they are, and on Ctrl-C (SIGINT) or
//      SIGTERM drains the services, then stops NATS. If any process dies, everything is stopped.
// Ports and paths can be changed through the usual SPECLOOP_* variables (see docs/ARCHITECTURE.md).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkHealth } from "../cli/dist/index.js";
import { provisionLocalBus, writeLocalBus } from "../shared/bus/dist/index.js";

const root = new URL("..", import.meta.url).pathname;
const dataDir = process.env.SPECLOOP_DATA_DIR ?? join(root, ".data");
const host = "127.0.0.1";
const natsPort = Number(process.env.SPECLOOP_START_NATS_PORT ?? 4250);
const externalNats = process.env.SPECLOOP_BUS__URLS;
const natsUrl = externalNats ?? `nats://${host}:${natsPort}`;

const SERVICES = [
  {
    name: "inference",
    grpcPort: 50051,
    metricsPort: 9461,
    env: {
      SPECLOOP_NODE__MODEL_DIR: join(root, "models/tiny-code"),
      SPECLOOP_SPECULATION__DRAFT_MODEL_DIR: join(root, "models/tiny-code-draft"),
    },
  },
  {
    name: "speculator-trainer",
    grpcPort: 50052,
    metricsPort: 9462,
    env: {
      SPECLOOP_STORE__PATH: join(dataDir, "speculator-trainer.sqlite"),
      SPECLOOP_SERVER__AUTH__TOKENS_FILE: join(dataDir, "trainer-tokens.yaml"),
      SPECLOOP_TRAINER__MODEL_DIR: join(root, "models/tiny-code"),
      // One core for learning, the rest for serving.
      SPECLOOP_TRAINER__CPU_THREADS: "1",
    },
  },
  {
    name: "verifier",
    grpcPort: 50053,
    metricsPort: 9463,
    env: {
      SPECLOOP_STORE__PATH: join(dataDir, "verifier.sqlite"),
      SPECLOOP_SERVER__AUTH__TOKENS_FILE: join(dataDir, "verifier-tokens.yaml"),
    },
  },
];

const children = [];
let stopping = false;

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

function launch(name, command, args, env) {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  prefixed(name, child.stdout, process.stdout);
  prefixed(name, child.stderr, process.stderr);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  const entry = { name, child, exited };
  children.push(entry);
  exited.then((how) => {
    if (!stopping) {
      console.error(`specloop: ${name} exited (${how}); stopping everything`);
      shutdown(1);
    }
  });
  child.once("error", (err) => {
    console.error(`specloop: cannot run ${command} for ${name}: ${err.message}`);
    shutdown(1);
  });
  return entry;
}

async function waitFor(what, probe, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (!stopping) {
    if (await probe()) return;
    if (Date.now() > until) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  // Services first (they drain in-flight calls), NATS last.
  const services = children.filter((c) => c.name !== "nats");
  for (const c of services) c.child.kill("SIGTERM");
  await Promise.all(services.map((c) => c.exited));
  for (const c of children.filter((c) => c.name === "nats")) {
    c.child.kill("SIGTERM");
    await c.exited;
  }
  process.exit(code);
}

process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

mkdirSync(dataDir, { recursive: true });
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
const ROLE = { inference: "node", "speculator-trainer": "trainer", verifier: "verifier" };
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
  await waitFor("nats-server", async () => ready, 15_000);
  try {
    await provisionLocalBus(bus);
  } catch (err) {
    console.error(`specloop: cannot provision NATS: ${err.message}`);
    await shutdown(1);
  }
}

for (const svc of SERVICES) {
  const busEnv = bus.env(ROLE[svc.name]);
  if (externalNats !== undefined) delete busEnv.SPECLOOP_BUS__CREDENTIALS_FILE;
  launch(svc.name, process.execPath, [join(root, "services", svc.name, "dist/main.js")], {
    SPECLOOP_SERVER__HOST: process.env.SPECLOOP_SERVER__HOST ?? host,
    SPECLOOP_SERVER__GRPC_PORT: String(svc.grpcPort),
    SPECLOOP_SERVER__METRICS_PORT: String(svc.metricsPort),
    SPECLOOP_BUS__URLS: natsUrl,
    ...busEnv,
    ...svc.env,
  });
}
try {
  for (const svc of SERVICES) {
    const server = `${host}:${svc.grpcPort}`;
    await waitFor(
      svc.name,
      () =>
        checkHealth({ server, service: "", timeoutMs: 1000 }).then(
          (h) => h.status === "SERVING",
          () => false,
        ),
      60_000,
    );
  }
} catch (err) {
  console.error(`specloop: ${err.message}`);
  await shutdown(1);
}
console.log(`\nspecloop is up (NATS ${natsUrl}${externalNats ? "" : ", started here"}):`);
for (const svc of SERVICES) {
  console.log(
    `  ${svc.name.padEnd(20)} grpc ${host}:${svc.grpcPort}  metrics http://${host}:${svc.metricsPort}/metrics`,
  );
}
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
console.log("    npx specloop status; npx specloop versions list; npx specloop trainer status");
console.log("Ctrl-C stops everything.\n");
