// The Aurora loop as real processes on loopback: a nats-server, the speculator-trainer and an inference
// node on the bundled model. The trainer ships a day-0 head live (signed), the node swaps it in; python
// traffic with the eagle drafter flows as traces into the trainer, which trains, publishes a canary
// (signed), and the node swaps the canary in beside live; the gate decides on the measured traffic, its
// decision readable with evidence through the API; every greedy output equals plain decoding throughout;
// a SIGKILL of the trainer mid-run leaves the node serving, and the restarted trainer resumes at its step
// with no duplicate version.
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
} from "@specloop/proto";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { call } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const insecure = credentials.createInsecure();
const ADMIN_TOKEN = "loop-test-admin-token-0123456789";
let dir: TempDir;
let nats: NatsServer;
let trainer: ServiceProcess;
let node: ServiceProcess;
let trainerEnv: Record<string, string>;
const admin = new Metadata();
admin.set("authorization", `Bearer ${ADMIN_TOKEN}`);

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

before(async () => {
  dir = tempDir("specloop-loop-");
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
    SPECLOOP_TRAINER__EXAMPLE_MAX_TOKENS: "48",
    SPECLOOP_GATE__MIN_SAMPLES: "8",
    // A canary not proven faster within a minute is retired: on this CPU a few training steps rarely make a
    // head measurably faster than day 0, and the test needs the gate to decide either way.
    SPECLOOP_GATE__TIMEOUT_MS: "60000",
  };
  trainer = await spawnService("speculator-trainer", { env: trainerEnv, timeoutMs: 120_000 });
  node = await spawnService("inference", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_BUS__MANIFESTS__TRUSTED_KEYS_FILE: keys.publicKeyFile,
      SPECLOOP_NODE__ID: "loop-node",
      SPECLOOP_NODE__CPU_THREADS: "1",
      SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "500",
      SPECLOOP_SPECULATION__MAX_DRAFT_TOKENS: "3",
    },
    timeoutMs: 120_000,
  });
});

after(async () => {
  await node?.stop();
  await trainer?.stop();
  await nats?.stop();
  dir?.dispose();
});

describe("loop - trainer and node as processes", () => {
  test("loop - day 0 live head, traces train a canary that both slots serve, the gate decides with evidence, outputs never change", async () => {
    const tc = new SpeculatorTrainerClient(trainer.address, insecure);
    const nc = new InferenceClient(node.address, insecure);
    try {
      await call((cb) =>
        tc.updateTrainingConfig(
          {
            config: TrainingConfig.fromPartial({
              batchSize: 2,
              publishEverySteps: 2,
              canaryShare: 0.5,
              unrollSteps: 2,
            }),
            updateFields: ["batch_size", "publish_every_steps", "canary_share", "unroll_steps"],
          },
          admin,
          cb,
        ),
      );
      // Day 0: a live head, signed, swapped into the node.
      const day0 = (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status
        ?.liveVersionId;
      assert.ok(day0, "the trainer shipped a day-0 version");
      await waitFor(
        "the node serving the day-0 head",
        async () => {
          const st = await call<GetNodeStatusResponse>((cb) => nc.getNodeStatus({}, cb));
          return (st.status?.speculators ?? []).some((m) => m.versionId === day0);
        },
        60_000,
      );
      const plain = new Map<string, number[]>();
      for (const p of PROMPTS) plain.set(p, (await generate(nc, p, Drafter.DRAFTER_NONE)).tokens);
      // Traffic until the trainer has published a canary and the node serves it.
      let canary = "";
      await waitFor(
        "a canary trained from the traffic and swapped into the node",
        async () => {
          for (const p of PROMPTS) {
            const r = await generate(nc, p, Drafter.DRAFTER_EAGLE);
            assert.deepEqual(r.tokens, plain.get(p), `eagle ${r.version}: the output equals plain decoding`);
          }
          canary =
            (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status
              ?.canaryVersionId ?? "";
          if (canary === "") return false;
          const st = await call<GetNodeStatusResponse>((cb) => nc.getNodeStatus({}, cb));
          return (st.status?.speculators ?? []).some((m) => m.versionId === canary);
        },
        240_000,
      );
      // More traffic, half of it drafted by the canary, until the gate decides.
      let decided: GetVersionResponse | undefined;
      await waitFor(
        "the gate's decision on the canary",
        async () => {
          for (const p of PROMPTS) {
            const r = await generate(nc, p, Drafter.DRAFTER_EAGLE);
            assert.deepEqual(r.tokens, plain.get(p), `eagle ${r.version}: the output equals plain decoding`);
          }
          const v = await call<GetVersionResponse>((cb) => tc.getVersion({ versionId: canary }, cb));
          if (v.events.some((e) => e.action === "promote" || e.action === "reject")) decided = v;
          return decided !== undefined;
        },
        180_000,
      );
      const decision = decided?.events.find((e) => e.action === "promote" || e.action === "reject");
      assert.equal(decision?.actor, "trainer");
      assert.ok(decision?.evidence !== undefined && decision.evidence.samples.length === 2);
      assert.ok((decision?.evidence?.samples[0] ?? 0) >= 8, "the canary served matched traffic");
      const list = await call<ListVersionsResponse>((cb) => tc.listVersions({ statuses: [], limit: 0 }, cb));
      const ids = list.versions.map((v) => v.versionId);
      assert.equal(new Set(ids).size, ids.length, "no duplicate version");
    } finally {
      tc.close();
      nc.close();
    }
  });

  test("loop - SIGKILL of the trainer: the node keeps serving, the trainer resumes at its step, versions stay unique", async () => {
    const tc = new SpeculatorTrainerClient(trainer.address, insecure);
    const before = (await call<GetTrainerStatusResponse>((cb) => tc.getTrainerStatus({}, cb))).status;
    tc.close();
    trainer.child.kill("SIGKILL");
    await new Promise((r) => trainer.child.once("exit", r));
    const nc = new InferenceClient(node.address, insecure);
    const r = await generate(nc, PROMPTS[0] as string, Drafter.DRAFTER_EAGLE);
    assert.ok(r.tokens.length > 0, "the node serves while the trainer is down");
    trainer = await spawnService("speculator-trainer", { env: trainerEnv, timeoutMs: 120_000 });
    const tc2 = new SpeculatorTrainerClient(trainer.address, insecure);
    try {
      const after = (await call<GetTrainerStatusResponse>((cb) => tc2.getTrainerStatus({}, cb))).status;
      assert.ok(
        (after?.trainingSteps ?? 0) >= (before?.trainingSteps ?? 0) - 2,
        "resumed near its last checkpoint",
      );
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
