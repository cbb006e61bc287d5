// `specloop trainer ...` and `specloop versions ...` as an operator runs them: the CLI process against a
// real speculator-trainer process (the bundled model, a SQLite file, its gRPC API with an admin token) on a
// real nats-server. The trainer learns from traces published as nodes publish them, makes a canary, and its
// gate promotes it on the canary's faster requests; the CLI shows the gate's evidence, rolls back, pins.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type Bus, publishTrace } from "@specloop/bus";
import { openTestBus, testBusConfig } from "@specloop/bus/internal";
import { Drafter, SpeculatorRole, Trace } from "@specloop/proto";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { EXIT } from "../exit-codes.js";
import { runCli } from "../run-cli.testing.js";
import { type ServiceProcess, spawnService } from "../service-process.testing.js";

const TOKEN = "ops-token-0123456789abcdef";
const READER_TOKEN = "reader-token-0123456789abcd";
const DAY0 = "tiny-code-s00000000";

let nats: NatsServer;
let bus: Bus;
let dir: TempDir;
let trainer: ServiceProcess;
let traceCount = 0;

/** The CLI against this trainer; `token` false leaves the admin token out. */
function cli(args: string[], token: string | false = TOKEN) {
  return runCli(args, {
    env: {
      SPECLOOP_TRAINER_ADDRESS: trainer.address,
      // A training step holds the trainer's event loop for seconds (reported to the trainer's owner).
      SPECLOOP_TIMEOUT_MS: "90000",
      ...(token === false ? {} : { SPECLOOP_ADMIN_TOKEN: token }),
    },
  });
}

async function json<T>(args: string[]): Promise<T> {
  const r = await cli([...args, "--json"]);
  assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface VersionJson {
  versionId: string;
  status: string;
  pinned?: boolean;
}

async function versions(): Promise<VersionJson[]> {
  return (await json<{ versions?: VersionJson[] }>(["versions", "list"])).versions ?? [];
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 120_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const got = await check();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}:\n${trainer.output()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A request as a node traces it when an eagle head (`version`) drafted it at about `tokensPerSecond`. */
async function publishServed(version: string, role: SpeculatorRole, tokensPerSecond: number): Promise<void> {
  const outputs = 33;
  const id = `r${traceCount++}`;
  await publishTrace(
    bus.js,
    Trace.fromPartial({
      traceId: `${id}:0`,
      requestId: id,
      chunkIndex: 0,
      final: true,
      modelId: "tiny-code",
      nodeId: "node-a",
      domain: "python",
      speculatorRole: role,
      promptTokenIds: [1, 2, 3],
      outputTokenIds: Array.from({ length: outputs }, (_, i) => 10 + i),
      steps: Array.from({ length: 8 }, (_, i) => ({
        outputOffset: i * 4,
        drafter: Drafter.DRAFTER_EAGLE,
        speculatorVersion: version,
        proposedTokenIds: [5, 6, 7],
        parents: [-1, 0, 1],
        draftProbs: [1, 1, 1],
        acceptedIndices: [0, 1, 2],
        bonusTokenId: 9,
      })),
      // Requests vary (0.6x to 1.4x, spread evenly), as real ones do: the gate sees a real variance.
      timings: {
        draftMs: 0,
        verifyMs: ((outputs - 1) / tokensPerSecond) * 1000 * (0.6 + 0.8 * ((traceCount * 0.618) % 1)),
      },
    }),
  );
}

before(async () => {
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  dir = tempDir("specloop-cli-trainer-");
  const tokens = join(dir.path, "tokens.yaml");
  writeFileSync(
    tokens,
    `- { identity: ops, roles: [admin], token: ${TOKEN} }\n- { identity: reader, roles: [], token: ${READER_TOKEN} }\n`,
  );
  trainer = await spawnService("speculator-trainer", {
    SPECLOOP_BUS__URLS: nats.url,
    SPECLOOP_STORE__PATH: join(dir.path, "trainer.sqlite"),
    SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokens,
    SPECLOOP_TRAINER__CPU_THREADS: "1",
    SPECLOOP_TRAINER__EXAMPLE_MAX_TOKENS: "48",
    SPECLOOP_GATE__MIN_SAMPLES: "6",
  });
});

after(async () => {
  await trainer?.stop();
  await bus?.close();
  await nats?.stop();
  dir?.dispose();
});

describe("cli trainer and versions", () => {
  it("status and versions list show the day-0 head live", async () => {
    const st = await json<{ status: { modelId: string; liveVersionId: string; paused?: boolean } }>([
      "trainer",
      "status",
    ]);
    assert.equal(st.status.modelId, "tiny-code");
    assert.equal(st.status.liveVersionId, DAY0);
    const table = await cli(["trainer", "status"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`live version +${DAY0}`));
    assert.match(table.stdout, /training +running/);
    const list = await cli(["versions", "list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^VERSION +STATUS/);
    assert.match(list.stdout, new RegExp(`${DAY0} +live`));
  });

  it("changes need the admin token: none is exit 4, a token without the role is exit 4, reads stay open", async () => {
    const none = await cli(["trainer", "pause"], false);
    assert.equal(none.code, EXIT.auth);
    assert.match(none.stderr, /UNAUTHENTICATED.*needs the admin token/);
    const reader = await cli(["versions", "pin"], READER_TOKEN);
    assert.equal(reader.code, EXIT.auth);
    assert.match(reader.stderr, /PERMISSION_DENIED: "reader" does not have the role "admin"/);
    assert.equal((await cli(["trainer", "config", "get"], false)).code, 0);
  });

  it("config set parses KEY=VALUE by field, the trainer bounds it, config get prints it", async () => {
    const bad = await cli(["trainer", "config", "set", "batchsize=4"]);
    assert.equal(bad.code, EXIT.usage);
    assert.match(bad.stderr, /unknown key "batchsize"; keys: learning_rate, batch_size/);
    const notInt = await cli(["trainer", "config", "set", "batch_size=2.5"]);
    assert.equal(notInt.code, EXIT.usage);
    const outOfBounds = await cli(["trainer", "config", "set", "canary_share=3"]);
    assert.equal(outOfBounds.code, EXIT.failed);
    assert.match(outOfBounds.stderr, /INVALID_ARGUMENT: config.canary_share: must be in \[0, 1\], got 3/);

    const set = await cli([
      "trainer",
      "config",
      "set",
      "batch_size=1",
      "publish_every_steps=1",
      "domains=python,c",
    ]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /batch_size +1/);
    assert.match(set.stdout, /domains +python,c/);
    const got = await json<{
      config: { batchSize: number; publishEverySteps: number; domains: string[]; learningRate: number };
    }>(["trainer", "config", "get"]);
    assert.deepEqual(
      [got.config.batchSize, got.config.publishEverySteps, got.config.domains],
      [1, 1, ["python", "c"]],
    );
    assert.equal(got.config.learningRate, 3e-4, "a field not named stays as it was");
  });

  it("the trainer learns a canary; its gate promotes it and show prints the evidence", async () => {
    // Served by the day-0 head: training data and the live arm of the gate.
    for (let i = 0; i < 6; i++) await publishServed(DAY0, SpeculatorRole.SPECULATOR_ROLE_LIVE, 100);
    const canary = await waitFor("a canary", async () =>
      (await versions()).find((v) => v.status === "VERSION_STATUS_CANARY"),
    );
    // No more training: the gate still judges (and no further version races the one under test).
    const paused = await cli(["trainer", "pause"]);
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /training +paused/);
    assert.match(paused.stdout, new RegExp(`canary version +${canary.versionId}`));

    for (let i = 0; i < 8; i++) {
      await publishServed(canary.versionId, SpeculatorRole.SPECULATOR_ROLE_CANARY, 200);
      await publishServed(DAY0, SpeculatorRole.SPECULATOR_ROLE_LIVE, 100);
    }
    await waitFor("the gate's promotion", async () =>
      (await versions()).find((v) => v.versionId === canary.versionId && v.status === "VERSION_STATUS_LIVE"),
    );
    const show = await cli(["versions", "show", canary.versionId]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /status +live/);
    assert.match(show.stdout, /canary +candidate -> canary +by trainer/);
    assert.match(show.stdout, /promote +canary -> live +by trainer/);
    assert.match(show.stdout, /evidence: requests canary \d+, live \d+ \(domains python\)/);
    assert.match(
      show.stdout,
      /mSPRT statistic \S+ against threshold 20\.00 \(crossed\); speed-up \d+\.\d{3}x/,
    );
    assert.match(show.stdout, /accepted tokens\/pass canary 4\.00, live 4\.00/);
    const shown = await json<{
      events: { action: string; evidence?: { speedup: number; samples: string[] } }[];
    }>(["versions", "show", canary.versionId]);
    const promote = shown.events.find((e) => e.action === "promote");
    assert.ok(promote?.evidence && promote.evidence.speedup > 1.5, JSON.stringify(promote));
  });

  it("rollback, pin and unpin record the token's identity; refusals have their own exit codes", async () => {
    const rolled = await cli(["versions", "rollback", "--reason", "cli test"]);
    assert.equal(rolled.code, 0, rolled.stderr);
    assert.match(rolled.stdout, new RegExp(`${DAY0} is live again; \\S+ is retired`));
    const retired = /; (\S+) is retired/.exec(rolled.stdout)?.[1] as string;
    const history =
      (await cli(["versions", "show", DAY0])).stdout + (await cli(["versions", "show", retired])).stdout;
    assert.match(history, /rollback .* by ops: cli test/);

    const pinned = await cli(["versions", "pin", "--reason", "hold"]);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.match(pinned.stdout, new RegExp(`${DAY0} is pinned`));
    assert.equal((await versions()).find((v) => v.versionId === DAY0)?.pinned, true);
    const refused = await cli(["versions", "rollback"]);
    assert.equal(refused.code, EXIT.conflict);
    assert.match(refused.stderr, /FAILED_PRECONDITION: .*pinned; unpin it first/);
    const unpinned = await cli(["versions", "unpin"]);
    assert.equal(unpinned.code, 0, unpinned.stderr);

    const missing = await cli(["versions", "promote", "tiny-code-s99999999"]);
    assert.equal(missing.code, EXIT.notFound);
    assert.match(missing.stderr, /NOT_FOUND: version tiny-code-s99999999 of tiny-code not found/);
    const resumed = await cli(["trainer", "resume"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /training +running/);
  });

  it("a trainer nobody listens at is exit 3, naming the address", async () => {
    const r = await runCli(["trainer", "status", "--trainer", "127.0.0.1:1", "--timeout", "2000"]);
    assert.equal(r.code, EXIT.unavailable);
    assert.match(r.stderr, /specloop trainer status: 127\.0\.0\.1:1: (unreachable|no answer)/);
  });
});
