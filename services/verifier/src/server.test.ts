// The Verifier service over real gRPC on loopback, with a real SQLite file and a real nats-server: Rank with
// the sandboxed tests judge ranks, stores and publishes its verdicts; bad input and a judge that cannot be
// reached get clear statuses, and a request can ask for failures to count as ties instead.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type ServiceError, status } from "@grpc/grpc-js";
import { type Bus, consumeVerdicts } from "@specloop/bus";
import { testLogger, waitFor } from "@specloop/bus/internal";
import {
  type GetTournamentResponse,
  Judge,
  JudgeFailurePolicy,
  type PairwiseVerdict,
  type RankRequest,
  type RankResponse,
  TournamentState,
  type VerifierClient,
} from "@specloop/proto";
import { bearerMetadata } from "@specloop/runtime";
import { SANDBOX_REFUSED } from "./sandbox/test-support.js";
import { startTestVerifier, type TestVerifier } from "./testing.js";
import { UNKNOWN_MODEL_ID } from "./verdicts.js";

const TOKEN = "server-test-token-0123456789";
let t: TestVerifier;
let bus: Bus;
let client: VerifierClient;

before(async () => {
  t = await startTestVerifier(
    "server",
    { SPECLOOP_TOURNAMENT__MAX_CANDIDATES: "6", SPECLOOP_TOURNAMENT__JUDGE_TIMEOUT_MS: "2000" },
    TOKEN,
  );
  ({ bus, client } = t);
});

after(async () => {
  await t?.close();
});

function rank(request: Partial<RankRequest>): Promise<RankResponse> {
  return new Promise((resolve, reject) =>
    client.rank(
      { question: "", candidates: [], ...request } as RankRequest,
      bearerMetadata(TOKEN),
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
}

async function rankError(request: Partial<RankRequest>): Promise<ServiceError> {
  try {
    await rank(request);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("Rank succeeded where an error was expected");
}

/** Sums two integers from stdin; the candidates differ in how many of the cases they get right. */
const ADDERS = [
  "a, b = map(int, input().split())\nprint(a - b)", // wrong everywhere but 5 0
  "a, b = map(int, input().split())\nprint(a + b)", // right
  "import sys\nsys.exit(3)", // crashes
  "a, b = map(int, input().split())\nprint(a + b if a < 10 else 0)", // right on two of three
];
const CASES = [
  { name: "small", stdin: "2 3\n", expectedStdout: "5\n" },
  { name: "zero", stdin: "5 0\n", expectedStdout: "5" },
  { name: "large", stdin: "40 2\n", expectedStdout: "42\n" },
];
const testsOptions = {
  judge: Judge.JUDGE_TESTS,
  budget: 0,
  seed: "11",
  onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED,
  tests: { language: "python", cases: CASES, timeLimitMs: 3000, memoryLimitMb: 128 },
};

describe("verifier server - Rank", () => {
  test("verifier server - Rank with the tests judge picks the candidate passing every case, stores it and publishes its verdicts", {
    skip: SANDBOX_REFUSED,
  }, async () => {
    const { tournament } = await rank({
      question: "add two integers",
      candidates: ADDERS,
      options: testsOptions,
    });
    assert.ok(tournament !== undefined);
    assert.equal(tournament.state, TournamentState.TOURNAMENT_STATE_DONE);
    assert.equal(tournament.ranking[0], 1);
    assert.equal(tournament.ranking[1], 3);
    assert.equal(tournament.budget, tournament.comparisons.length);
    assert.ok(tournament.comparisons.length >= ADDERS.length && tournament.comparisons.length <= 6);
    assert.equal(tournament.seed, 11);

    const stored = await new Promise<GetTournamentResponse>((resolve, reject) =>
      client.getTournament({ tournamentId: tournament.tournamentId }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
    assert.deepEqual(stored.tournament?.comparisons, tournament.comparisons);

    const verdicts: PairwiseVerdict[] = [];
    const consumer = await consumeVerdicts(bus, {
      durable: "verifier-server-test",
      logger: testLogger,
      handler: (v) => {
        if (v.tournamentId === tournament.tournamentId) verdicts.push(v);
        return "ack";
      },
    });
    try {
      await waitFor("the tournament's verdicts", () => verdicts.length === tournament.comparisons.length);
    } finally {
      await consumer.stop();
    }
    const first = tournament.comparisons[0];
    const v = verdicts.find(
      (x) => x.candidateA === ADDERS[first?.a ?? -1] && x.candidateB === ADDERS[first?.b ?? -1],
    );
    assert.equal(v?.pA, first?.pA);
    assert.equal(v?.judge, Judge.JUDGE_TESTS);
    assert.equal(v?.modelId, UNKNOWN_MODEL_ID);
    assert.equal(v?.question, "add two integers");
  });

  test("verifier server - bad input is INVALID_ARGUMENT naming the field", async () => {
    const none = await rankError({ question: "q", candidates: [] });
    assert.equal(none.code, status.INVALID_ARGUMENT);
    assert.match(none.details, /candidates: at least one/);
    const many = await rankError({ question: "q", candidates: ["1", "2", "3", "4", "5", "6", "7"] });
    assert.equal(many.code, status.INVALID_ARGUMENT);
    assert.match(many.details, /7 candidates is over this verifier's maximum of 6/);
    const noCases = await rankError({
      question: "q",
      candidates: ["print(1)"],
      options: { ...testsOptions, tests: { ...testsOptions.tests, cases: [] } },
    });
    assert.equal(noCases.code, status.INVALID_ARGUMENT);
    assert.match(noCases.details, /options.tests.cases/);
    const language = await rankError({
      question: "q",
      candidates: ["print(1)"],
      options: { ...testsOptions, tests: { ...testsOptions.tests, language: "cobol" } },
    });
    assert.match(language.details, /options.tests.language: must be one of python, javascript/);
  });

  test("verifier server - a pairwise judge whose node is down fails the call with UNAVAILABLE, promptly", async () => {
    const started = Date.now();
    const err = await rankError({ question: "q", candidates: ["a", "b", "c"] });
    assert.equal(err.code, status.UNAVAILABLE);
    assert.match(err.details, /inference GetNodeStatus/);
    assert.ok(Date.now() - started < 10_000);
  });

  test("verifier server - a candidate that loops forever is killed at the time limit and loses", {
    skip: SANDBOX_REFUSED,
  }, async () => {
    const { tournament } = await rank({
      question: "add",
      candidates: ["while True:\n    pass", ADDERS[1] as string],
      options: { ...testsOptions, tests: { ...testsOptions.tests, timeLimitMs: 300 } },
    });
    assert.deepEqual(tournament?.ranking, [1, 0]);
    assert.equal(tournament?.comparisons.length, 1);
  });
});
