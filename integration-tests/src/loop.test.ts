// The Aurora loop as real processes on loopback: a nats-server, the speculator-trainer and two inference
// nodes on the bundled model. The trainer ships a day-0 head live (signed), both nodes swap it in; python
// traffic with the eagle drafter, spread over the nodes, flows as traces into the trainer, which trains on
// its own thread, publishes a canary (signed), and both nodes swap it in beside live; the gate measures the
// canary against live on that traffic and promotes it, its decision readable with evidence through the API;
// both nodes then serve the promoted head live, whose accepted tokens per target pass are above day 0's. A
// version trained into noise (an operator sets the learning rate to 1) becomes the next canary, and the gate
// retires it with its evidence while live keeps serving.
// Every greedy output equals plain decoding throughout and no call fails. A SIGKILL of the trainer mid-run
// leaves the nodes serving, and the restarted trainer resumes at its step with no duplicate version.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, Metadata } from "@grpc/grpc-js";
import { writeSigningKey } from "@specloop/bus";
import { waitFor } from "@specloop/bus/internal";
import {
  Drafter,
  GenerateRequest,
  type GenerateResponse,
  type GetNodeStatusResponse,
  type GetTrainerStatusResponse,
  type GetVersionResponse,
  InferenceClient,
  type ListVersionsResponse,
  SpeculatorTrainerClient,
  TrainingConfig,
  VersionStatus,
} from "@specloop/proto";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { call } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const insecure = credentials.createInsecure();
const ADMIN_TOKEN = "loop-test-admin-token-0123456789";
let dir: TempDir;
let nats: NatsServer;
let trainer: ServiceProcess;
let nodes: ServiceProcess[] = [];
let trainerEnv: Record<string, string>;
let trainerMetricsPort = 0;
const admin = new Metadata();
admin.set("authorization", `Bearer ${ADMIN_TOKEN}`);
/** Plain decoding's output per prompt (the first test fills it). */
const plain = new Map<string, number[]>();
/** The version the first test saw promoted. */
let promotedLive = "";

const PROMPTS = [
  "def fibonacci(n):\n",
  "def is_prime(n):\n",
  "def reverse_list(items):\n",
  "def factorial(n):\n",
];

function generate(
  client: InferenceClient,
  prompt: string,
  drafter: Drafter,
): Promise<{ tokens: number[]; perPass: number; version: string }> {
  return new Promise((resolve, reject) => {
    const chunks: GenerateResponse[] = [];
    const s = client.generate(
      GenerateRequest.fromPartial({ prompt, maxTokens: 32, domain: "python", speculation: { drafter } }),
    );
    s.on("data", (c: GenerateResponse) => chunks.push(c));
    s.on("error", reject);
    s.on("end", () => {
      const last = chunks.at(-1);
      resolve({
        tokens: chunks.flatMap((c) => c.tokenIds),
        perPass: last?.stats?.acceptedPerPass ?? 0,
        version: last?.stats?.speculatorVersion ?? "",
      });
    });
  });
}

/**
 * One eagle request per prompt each call, alternating nodes; every output checked against plain decoding, and
 * its accepted tokens per pass kept under the version that drafted it.
 */
function eagleTraffic(
  clients: readonly InferenceClient[],
  perPass: Map<string, number[]>,
): () => Promise<void> {
  let requests = 0;
  return async () => {
    for (const p of PROMPTS) {
      const nc = clients[requests++ % clients.length] as InferenceClient;
      const r = await generate(nc, p, Drafter.DRAFTER_EAGLE);
      assert.deepEqual(r.tokens, plain.get(p), `eagle ${r.version}: the output equals plain decoding`);
      perPass.set(r.version, [...(perPass.get(r.version) ?? []), r.perPass]);
    }
  };
}

before(async () => {
  dir = tempDir("specloop-loop-");
  trainerMetricsPort = await freePort();
  nats = await startNatsServer();
  const keys = writeSigningKey(join(dir.path, "keys"));
  const tokens = join(dir.path, "tokens.yaml");
  writeFileSync(tokens, `- identity: test-admin\n  roles: [admin]\n  token: ${ADMIN_TOKEN}\n`);
  trainerEnv = {
    SPECLOOP_BUS__URLS: nats.url,
    SPECLOOP_STORE__PATH: join(dir.path, "trainer", "trainer.sqlite"),
    SPECLOOP_BUS__MANIFESTS__SIGNING_KEY_FILE: keys.keyFile,
    SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokens,
    SPECLOOP_TRAINER__CPU_THREADS: "1",
    SPECLOOP_SERVER__METRICS_PORT: String(trainerMetricsPort),
    SPECLOOP_TRAINER__EXAMPLE_MAX_TOKENS: "48",
    SPECLOOP_GATE__MIN_SAMPLES: "8",
    // A canary not proven faster within a minute is retired: on this CPU a few training steps rarely make a
    // head measurably faster than day 0, and the test needs the gate to decide either way.
    SPECLOOP_GATE__TIMEOUT_MS: "60000",
  };
  trainer = await spawnService("speculator-trainer", { env: trainerEnv, timeoutMs: 120_000 });
  nodes = await Promise.all(
    ["loop-node-a", "loop-node-b"].map((id) =>
      spawnService("inference", {
        env: {
          SPECLOOP_BUS__URLS: nats.url,
          SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS_FILE: keys.publicKeyFile,
          SPECLOOP_NODE__ID: id,
          SPECLOOP_NODE__CPU_THREADS: "1",
          SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "500",
          SPECLOOP_SPECULATION__MAX_DRAFT_TOKENS: "3",
        },
        timeoutMs: 120_000,
      }),
    ),
  );
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await trainer?.stop();
  await nats?.stop();
  dir?.dispose();
});

describe("loop - trainer and two nodes as processes", () => {
  test("loop - day 0 live on both nodes, traces train a canary both serve, the gate promotes it with evidence, acceptance rises, outputs never change", async () => {
    const tc = new SpeculatorTrainerClient(trainer.address, insecure);
    const clients = nodes.map((n) => new InferenceClient(n.address, insecure));
    /** Node statuses' speculator versions, per node. */
    const served = async () =>
      Promise.all(
        clients.map(async (nc) =>
          (
            (await call<GetNodeStatusResponse>((cb) => nc.getNodeStatus({}, cb))).status?.speculators ?? []
          ).map((m) => m.versionId),
        ),
      );
    const trainerStatus = async () =>
      (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status;
    /** Accepted tokens per target pass of every eagle request, by the version that drafted it. */
    const perPass = new Map<string, number[]>();
    const traffic = eagleTraffic(clients, perPass);
    try {
      // A head that learns the test's prompts within a few dozen steps: the canary then differs from day 0
      // by more than the CPU's timing noise, so the gate can prove it faster within the test's time.
      await call((cb) =>
        tc.updateTrainingConfig(
          {
            config: TrainingConfig.fromPartial({
              learningRate: 3e-3,
              batchSize: 2,
              publishEverySteps: 12,
              canaryShare: 0.5,
              unrollSteps: 2,
            }),
            updateFields: [
              "learning_rate",
              "batch_size",
              "publish_every_steps",
              "canary_share",
              "unroll_steps",
            ],
          },
          admin,
          cb,
        ),
      );
      // Day 0: a live head, signed, swapped into both nodes.
      const day0 = (await trainerStatus())?.liveVersionId;
      assert.ok(day0, "the trainer shipped a day-0 version");
      await waitFor(
        "both nodes serving the day-0 head",
        async () => (await served()).every((v) => v.includes(day0)),
        60_000,
      );
      for (const p of PROMPTS)
        plain.set(p, (await generate(clients[0] as InferenceClient, p, Drafter.DRAFTER_NONE)).tokens);
      // Traffic until the gate promotes a canary trained from it (a canary it cannot prove faster within
      // the gate's timeout is retired, and the next version published becomes the canary).
      let promoted: GetVersionResponse | undefined;
      await waitFor(
        "a canary trained from the traffic, served by both nodes, promoted by the gate",
        async () => {
          await traffic();
          const live = (await trainerStatus())?.liveVersionId ?? "";
          if (live === day0) return false;
          promoted = await call<GetVersionResponse>((cb) => tc.getVersion({ versionId: live }, cb));
          return true;
        },
        420_000,
      );
      const live = promoted?.version?.versionId as string;
      const promote = promoted?.events.find((e) => e.action === "promote");
      assert.equal(promote?.actor, "trainer");
      assert.ok(
        promoted?.events.some((e) => e.action === "canary"),
        "it was a canary first",
      );
      const evidence = promote?.evidence;
      assert.ok(evidence !== undefined && evidence.samples.length === 2, "the decision's evidence is stored");
      assert.ok((evidence?.samples[0] ?? 0) >= 8, "the canary served matched traffic");
      assert.ok((evidence?.speedup ?? 0) > 1, `measured faster: ${evidence?.speedup}x`);
      await waitFor(
        "both nodes serving the promoted head",
        async () => (await served()).every((v) => v.includes(live)),
        60_000,
      );
      await traffic();
      await traffic();
      promotedLive = live;
      const mean = (xs: number[] = []) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      const before = mean(perPass.get(day0));
      const after = mean(perPass.get(live));
      assert.ok(
        after > before,
        `accepted tokens per pass: day 0 ${before.toFixed(3)}, promoted ${live} ${after.toFixed(3)} (${perPass.get(live)?.length} requests)`,
      );
      const list = await call<ListVersionsResponse>((cb) => tc.listVersions({ statuses: [], limit: 0 }, cb));
      const ids = list.versions.map((v) => v.versionId);
      assert.equal(new Set(ids).size, ids.length, "no duplicate version");
    } finally {
      tc.close();
      for (const c of clients) c.close();
    }
  });

  test("loop - a version trained into noise (learning rate 1) is canaried and retired by the gate with evidence; live never changes", async () => {
    assert.ok(promotedLive !== "", "the first test promoted a version");
    const tc = new SpeculatorTrainerClient(trainer.address, insecure);
    const clients = nodes.map((n) => new InferenceClient(n.address, insecure));
    const status = async () =>
      (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status;
    try {
      const before = new Set(
        (
          await call<ListVersionsResponse>((cb) => tc.listVersions({ statuses: [], limit: 0 }, cb))
        ).versions.map((v) => v.versionId),
      );
      // An operator's mistake: every AdamW step now moves each weight by about 1, fifty times its scale.
      await call((cb) =>
        tc.updateTrainingConfig(
          {
            config: TrainingConfig.fromPartial({ learningRate: 1, publishEverySteps: 4 }),
            updateFields: ["learning_rate", "publish_every_steps"],
          },
          admin,
          cb,
        ),
      );
      /** Accepted tokens per pass of each request, by the version that drafted it. */
      const accepted = new Map<string, number[]>();
      const traffic = eagleTraffic(clients, accepted);
      // A canary published after the change (one running before it, trained normally, is decided first).
      let bad = "";
      let liveAtBad = "";
      await waitFor(
        "a canary trained at learning rate 1",
        async () => {
          await traffic();
          const st = await status();
          const c = st?.canaryVersionId ?? "";
          if (c !== "" && !before.has(c)) {
            bad = c;
            liveAtBad = st?.liveVersionId ?? "";
          }
          return bad !== "";
        },
        240_000,
      );
      let decided: GetVersionResponse | undefined;
      await waitFor(
        "the gate's decision on the noise canary",
        async () => {
          await traffic();
          const v = await call<GetVersionResponse>((cb) => tc.getVersion({ versionId: bad }, cb));
          if (v.events.some((e) => e.action === "promote" || e.action === "reject")) decided = v;
          return decided !== undefined;
        },
        180_000,
      );
      const decision = decided?.events.find((e) => e.action === "promote" || e.action === "reject");
      assert.equal(
        decision?.action,
        "reject",
        `the noise canary was ${decision?.action}ed: ${decision?.reason}`,
      );
      assert.equal(decision?.actor, "trainer");
      assert.ok(decision?.evidence !== undefined, "the decision's evidence is readable through the API");
      assert.equal(decided?.version?.status, VersionStatus.VERSION_STATUS_REJECTED);
      assert.equal(
        (await status())?.liveVersionId,
        liveAtBad,
        "live never changed while the noise canary ran",
      );
    } finally {
      await call((cb) =>
        tc.updateTrainingConfig(
          {
            config: TrainingConfig.fromPartial({ learningRate: 3e-3, publishEverySteps: 12 }),
            updateFields: ["learning_rate", "publish_every_steps"],
          },
          admin,
          cb,
        ),
      );
      tc.close();
      for (const c of clients) c.close();
    }
  });

  test("loop - SIGKILL of the trainer: the node keeps serving, the trainer resumes at its step, versions stay unique", async () => {
    const tc = new SpeculatorTrainerClient(trainer.address, insecure);
    const before = (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status;
    tc.close();
    trainer.child.kill("SIGKILL");
    await new Promise((r) => trainer.child.once("exit", r));
    const nc = new InferenceClient((nodes[1] as ServiceProcess).address, insecure);
    const r = await generate(nc, PROMPTS[0] as string, Drafter.DRAFTER_EAGLE);
    assert.ok(r.tokens.length > 0, "the nodes serve while the trainer is down");
    trainer = await spawnService("speculator-trainer", { env: trainerEnv, timeoutMs: 120_000 });
    const tc2 = new SpeculatorTrainerClient(trainer.address, insecure);
    try {
      const after = (await call<GetTrainerStatusResponse>((cb) => tc2.getTrainerStatus({}, cb))).status;
      assert.ok(
        (after?.trainingSteps ?? 0) >= (before?.trainingSteps ?? 0) - 2,
        "resumed near its last checkpoint",
      );
      // Its replay buffer was refilled from the trace stream before any new traffic came.
      const metrics = await (await fetch(`http://127.0.0.1:${trainerMetricsPort}/metrics`)).text();
      const buffered = Number(
        /^specloop_trainer_buffer_traces(?:\{[^}]*\})? (\S+)$/m.exec(metrics)?.[1] ?? "0",
      );
      const said = `${trainer.output().stdout}${trainer.output().stderr}`
        .split("\n")
        .filter((l) => l.includes("replay buffer"))
        .join("\n");
      assert.ok(buffered > 0, `the restarted trainer's buffer holds ${buffered} traces; it said: ${said}`);
      for (const p of PROMPTS.slice(0, 3)) await generate(nc, p, Drafter.DRAFTER_EAGLE);
      const list = await call<ListVersionsResponse>((cb) => tc2.listVersions({ statuses: [], limit: 0 }, cb));
      const ids = list.versions.map((v) => v.versionId);
      assert.equal(new Set(ids).size, ids.length, "no duplicate version after the restart");
    } finally {
      tc2.close();
      nc.close();
    }
  });
});
