// The Verifier's calls are gated and bounded, and what it records and publishes is what happened: over real
// gRPC on loopback with a real SQLite store and a real nats-server. The tests judge needs a run-code token
// and records who asked; bad input is INVALID_ARGUMENT naming the field (also values a typed client cannot
// send: unknown enum numbers, written as raw protobuf); a machine that cannot sandbox says so; with NATS
// down a call answers at once and its verdicts wait in the bus's spool until NATS is back.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { type Bus, consumeVerdicts, SpooledPublisher } from "@specloop/bus";
import { openTestBus, testBusConfig, testLogger, waitFor } from "@specloop/bus/internal";
import {
  type GetTournamentResponse,
  Judge,
  JudgeFailurePolicy,
  type PairwiseVerdict,
  RankRequest,
  RankResponse,
  SolveRequest,
  TournamentState,
  VerifierClient,
  VerifierService,
} from "@specloop/proto";
import {
  bearerMetadata,
  type GrpcServerHandle,
  loadConfig,
  startGrpcServer,
  TokenAuth,
} from "@specloop/runtime";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { eq } from "drizzle-orm";
import { RUN_CODE_ROLE, type VerifierConfig, verifierConfigSchema } from "./config.js";
import { comparisons, openVerifierStore, tournaments, type VerifierStore } from "./db/index.js";
import { connectInference, type InferenceNode } from "./judges/inference.js";
import { TournamentRecorder } from "./record.js";
import { SANDBOX_REFUSED } from "./sandbox/test-support.js";
import { verifierServer } from "./server.js";
import { VerdictOutbox } from "./verdicts.js";

const skip = SANDBOX_REFUSED;
const RUNNER = "record-test-runner-0123456789";
const READER = "record-test-reader-0123456789";

let dir: TempDir;
let nats: NatsServer;
let bus: Bus;
let store: VerifierStore;
let node: InferenceNode;
const servers: GrpcServerHandle[] = [];
let client: VerifierClient;
/** A verifier whose Python cannot run: every tests-judge call fails. */
let broken: VerifierClient;

async function serve(config: VerifierConfig): Promise<VerifierClient> {
  const auth = new TokenAuth([
    { identity: "ci-runner", roles: [RUN_CODE_ROLE], token: RUNNER },
    { identity: "dashboard", roles: ["read"], token: READER },
  ]);
  const server = await startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    logger: testLogger,
    services: [
      {
        name: "specloop.v1.Verifier",
        definition: VerifierService,
        implementation: verifierServer({ db: store.db, bus, node, config, logger: testLogger, auth }),
      },
    ],
  });
  servers.push(server);
  return new VerifierClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
}

before(async () => {
  dir = tempDir("specloop-verifier-record-");
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  store = openVerifierStore(join(dir.path, "verifier.sqlite"));
  node = connectInference(`127.0.0.1:${await freePort()}`);
  const env = { SPECLOOP_TOURNAMENT__MAX_CANDIDATES: "4", SPECLOOP_TOURNAMENT__JUDGE_TIMEOUT_MS: "2000" };
  client = await serve(loadConfig(verifierConfigSchema, { env }));
  broken = await serve(
    loadConfig(verifierConfigSchema, { env: { ...env, SPECLOOP_TESTS__PYTHON: "no-such-python" } }),
  );
});

after(async () => {
  client?.close();
  broken?.close();
  for (const s of servers) await s.shutdown("test over");
  node?.close();
  await bus?.close();
  store?.close();
  await nats?.stop();
  dir?.dispose();
});

const ADD = "a, b = map(int, input().split())\nprint(a + b)";
const SUB = "a, b = map(int, input().split())\nprint(a - b)";
const testsOptions = (policy = JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL) => ({
  judge: Judge.JUDGE_TESTS,
  budget: 0,
  seed: "7",
  onJudgeFailure: policy,
  tests: {
    language: "python",
    cases: [{ name: "sum", stdin: "2 3\n", expectedStdout: "5" }],
    timeLimitMs: 3_000,
    memoryLimitMb: 64,
  },
});

function rank(
  request: Partial<RankRequest>,
  metadata: Metadata = bearerMetadata(RUNNER),
  on: VerifierClient = client,
): Promise<RankResponse> {
  return new Promise((resolve, reject) =>
    on.rank(
      RankRequest.fromPartial({ question: "q", ...request }),
      metadata,
      { deadline: Date.now() + 20_000 },
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
}

async function failure(call: Promise<unknown>): Promise<ServiceError> {
  try {
    await call;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where an error was expected");
}

// Protobuf by hand, for what a typed client cannot send (enum numbers the proto does not define).
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
function field(tag: number, wire: 0 | 2, value: number | number[]): number[] {
  const key = varint((tag << 3) | wire);
  return wire === 0
    ? [...key, ...varint(value as number)]
    : [...key, ...varint((value as number[]).length), ...(value as number[])];
}
const text = (s: string): number[] => [...Buffer.from(s, "utf8")];

function rawRank(bytes: number[]): Promise<ServiceError> {
  return failure(
    new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        "/specloop.v1.Verifier/Rank",
        (b: Buffer) => b,
        (b: Buffer) => RankResponse.decode(b),
        Buffer.from(bytes),
        bearerMetadata(RUNNER),
        { deadline: Date.now() + 10_000 },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    ),
  );
}

describe("verifier record - who may run code", () => {
  test("verifier record - the tests judge needs a run-code token; the tournament records its identity", {
    skip,
  }, async () => {
    const request = { candidates: [ADD, SUB], options: testsOptions() };
    const none = await failure(rank(request, new Metadata()));
    assert.equal(none.code, status.UNAUTHENTICATED);
    const unknown = await failure(rank(request, bearerMetadata("not-a-token-anyone-has-0123")));
    assert.equal(unknown.code, status.UNAUTHENTICATED);
    const reader = await failure(rank(request, bearerMetadata(READER)));
    assert.equal(reader.code, status.PERMISSION_DENIED);
    assert.match(reader.details, /"dashboard" does not have the role "run-code"/);
    // The model judges run no code: no token needed (the node is down here, hence UNAVAILABLE).
    const pairwise = await failure(rank({ candidates: ["a", "b"] }, new Metadata()));
    assert.equal(pairwise.code, status.UNAVAILABLE);

    // Solve with the tests judge runs the model's code: the same gate.
    const solveNone = await new Promise<ServiceError | undefined>((resolve) => {
      const stream = client.solve(SolveRequest.fromPartial({ question: "q", n: 2, options: testsOptions() }));
      stream.on("data", () => undefined);
      stream.on("error", resolve);
      stream.on("end", () => resolve(undefined));
    });
    assert.equal(solveNone?.code, status.UNAUTHENTICATED);

    const { tournament } = await rank(request);
    assert.equal(tournament?.state, TournamentState.TOURNAMENT_STATE_DONE);
    assert.equal(tournament?.requestedBy, "ci-runner");
    assert.equal(tournament?.realVerdicts, 1);
    const stored = await new Promise<GetTournamentResponse>((resolve, reject) =>
      client.getTournament({ tournamentId: tournament?.tournamentId ?? "" }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
    assert.equal(stored.tournament?.requestedBy, "ci-runner");
  });
});

describe("verifier record - bounds", () => {
  test("verifier record - bad input is INVALID_ARGUMENT naming the field, with its bound", async () => {
    const tests = testsOptions().tests;
    const cases: [Partial<RankRequest>, RegExp][] = [
      [{ question: "", candidates: [ADD] }, /^question: must not be empty/],
      [
        { question: "x".repeat(70_000), candidates: [ADD] },
        /^question: 70000 bytes is over the maximum of 65536/,
      ],
      [
        { candidates: [ADD, "x".repeat(140_000)] },
        /^candidates\[1\]: 140000 bytes is over the maximum of 131072/,
      ],
      [
        { candidates: [ADD], options: { ...testsOptions(), tests: { ...tests, timeLimitMs: 2 ** 31 } } },
        /^options.tests.time_limit_ms: 2147483648 is over this verifier's maximum of 10000/,
      ],
      [
        { candidates: [ADD], options: { ...testsOptions(), tests: { ...tests, memoryLimitMb: 1 } } },
        /^options.tests.memory_limit_mb: must be 32 to 1024 for python, got 1/,
      ],
      [
        {
          candidates: [ADD],
          options: {
            ...testsOptions(),
            tests: { ...tests, cases: [{ name: "big", stdin: "x".repeat(1 << 20), expectedStdout: "" }] },
          },
        },
        /^options.tests.cases\[0\]: 1048579 bytes is over the maximum of 1048576/,
      ],
      [
        { candidates: [ADD], options: { ...testsOptions(), seed: String(2 ** 60) } },
        /^options.seed: must be at most/,
      ],
      [
        { candidates: [ADD], options: { ...testsOptions(), budget: 2_000_000 } },
        /^options.budget: must be 0 to 1000000/,
      ],
    ];
    for (const [request, details] of cases) {
      const err = await failure(rank(request));
      assert.equal(err.code, status.INVALID_ARGUMENT, `${details}: ${err.details}`);
      assert.match(err.details, details);
    }
    const judge = await rawRank([
      ...field(1, 2, text("q")),
      ...field(2, 2, text(ADD)),
      ...field(3, 2, field(1, 0, 99)),
    ]);
    assert.equal(judge.code, status.INVALID_ARGUMENT);
    assert.match(judge.details, /^options.judge: unknown judge/);
    const policy = await rawRank([
      ...field(1, 2, text("q")),
      ...field(2, 2, text(ADD)),
      ...field(3, 2, [...field(1, 0, 3), ...field(4, 0, 99)]),
    ]);
    assert.equal(policy.code, status.INVALID_ARGUMENT);
    assert.match(policy.details, /^options.on_judge_failure: unknown judge failure policy/);
  });

  test("verifier record - a 100 KB tournament id is refused at once, naming the field", async () => {
    const started = Date.now();
    const err = await failure(
      new Promise((resolve, reject) =>
        client.getTournament(
          { tournamentId: "x".repeat(100_000) },
          new Metadata(),
          { deadline: Date.now() + 5_000 },
          (e, r) => (e ? reject(e) : resolve(r)),
        ),
      ),
    );
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^tournament_id: must be at most 64 characters/);
    assert.ok(Date.now() - started < 2_000);
    // The channel still works.
    const missing = await failure(
      new Promise((resolve, reject) =>
        client.getTournament({ tournamentId: "no-such-id" }, (e, r) => (e ? reject(e) : resolve(r))),
      ),
    );
    assert.equal(missing.code, status.NOT_FOUND);
  });
});

describe("verifier record - the record is true", () => {
  test("verifier record - a machine that cannot sandbox answers FAILED_PRECONDITION whatever the failure policy", async () => {
    for (const policy of [
      JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
      JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE,
    ]) {
      const question = `no sandbox ${policy}`;
      const err = await failure(
        rank(
          { question, candidates: [ADD, SUB, ADD], options: testsOptions(policy) },
          bearerMetadata(RUNNER),
          broken,
        ),
      );
      assert.equal(err.code, status.FAILED_PRECONDITION, err.details);
      assert.match(err.details, /cannot run the Python interpreter "no-such-python"/);
      const row = store.db.select().from(tournaments).where(eq(tournaments.question, question)).get();
      assert.equal(row?.state, "failed");
      // Nothing was judged, so nothing was invented either.
      assert.equal(
        store.db
          .select()
          .from(comparisons)
          .where(eq(comparisons.tournamentId, row?.id ?? ""))
          .all().length,
        0,
      );
    }
  });

  test("verifier record - with NATS down, Rank answers at once and its verdicts go once NATS is back", {
    skip,
  }, async () => {
    await nats.kill();
    let id = "";
    try {
      const started = Date.now();
      const { tournament } = await rank({
        question: "nats down",
        candidates: [ADD, SUB, ADD],
        options: testsOptions(),
      });
      const ms = Date.now() - started;
      assert.equal(tournament?.state, TournamentState.TOURNAMENT_STATE_DONE);
      assert.ok(ms < 4_000, `Rank took ${ms} ms with NATS down`);
      id = tournament?.tournamentId ?? "";
      // Handed to the bus's spool, which holds them until NATS is back.
      const stored = store.db.select().from(comparisons).where(eq(comparisons.tournamentId, id)).all();
      assert.equal(stored.length, tournament?.comparisons.length);
      assert.ok(stored.every((c) => c.publishedAt !== null));
    } finally {
      await nats.start();
    }
    const seen: PairwiseVerdict[] = [];
    let consumer: Awaited<ReturnType<typeof consumeVerdicts>> | undefined;
    // The bus reconnects on its own; until it has, setting up a consumer times out.
    await waitFor(
      "the bus to reconnect",
      async () => {
        consumer = await consumeVerdicts(bus, {
          durable: `record-nats-${process.pid}`,
          logger: testLogger,
          handler: (v) => {
            if (v.tournamentId === id) seen.push(v);
            return "ack";
          },
        }).catch(() => undefined);
        return consumer !== undefined;
      },
      30_000,
    );
    try {
      await waitFor("the spooled verdicts", () => seen.length === 3, 45_000);
    } finally {
      await consumer?.stop();
    }
  });

  test("verifier record - verdicts a stopped verifier left in the store are handed over at the next start; invented ones never", async () => {
    const id = `left-${process.pid}`;
    const rec = new TournamentRecorder(store.db, id);
    rec.start({
      id,
      question: "left behind",
      candidates: [ADD, SUB, "print(5)"],
      judge: "tests",
      budget: 2,
      seed: 1,
      state: "judging",
      modelId: null,
      requestedBy: "ci-runner",
    });
    rec.comparison({ a: 0, b: 1, pA: 1, phase: 1 }, 0, false);
    rec.comparison({ a: 1, b: 2, pA: 0.5, phase: 1 }, 1, true);
    rec.done([0, 2, 1], [1, 0, -1], 2, 1);
    const publisher = SpooledPublisher.open(bus, { dir: "", maxBytes: 1 << 20, logger: testLogger });
    const outbox = new VerdictOutbox(store.db, publisher, testLogger);
    assert.equal(outbox.pending(), 1);
    const seen: PairwiseVerdict[] = [];
    const consumer = await consumeVerdicts(bus, {
      durable: `record-left-${process.pid}`,
      logger: testLogger,
      handler: (v) => {
        if (v.tournamentId === id) seen.push(v);
        return "ack";
      },
    });
    try {
      outbox.handOver();
      assert.equal(outbox.pending(), 0);
      await waitFor("the left-behind verdict", () => seen.length === 1);
      assert.equal(await publisher.flush(5_000), true);
      // A second start hands over nothing again.
      outbox.handOver();
      assert.equal(outbox.stats.handedOver, 1);
    } finally {
      await consumer.stop();
      await publisher.close();
    }
    assert.equal(seen[0]?.candidateA, ADD);
    assert.equal(seen[0]?.pA, 1);
  });
});
