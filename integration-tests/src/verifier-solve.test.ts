// The verifier against a real inference node: a nats-server, an inference process serving the bundled model
// on the cpu backend and a verifier process, all started here. Solve samples N candidates through the node's
// Generate (sharing the prompt's KV), streams them, ranks them with the pairwise judge over the node's Score,
// stores the tournament and publishes its verdicts; Rank with the pairwise judge asks both orders and stays
// in budget; a Solve whose node has gone fails with UNAVAILABLE instead of hanging.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials, type ServiceError, status } from "@grpc/grpc-js";
import { type Bus, consumeVerdicts } from "@specloop/bus";
import { openTestBus, testBusConfig, testLogger, waitFor } from "@specloop/bus/internal";
import {
  type GetTournamentResponse,
  Judge,
  JudgeFailurePolicy,
  type PairwiseVerdict,
  type RankResponse,
  SolveRequest,
  type SolveResponse,
  type Tournament,
  TournamentState,
  VerifierClient,
} from "@specloop/proto";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { openVerifierStore } from "@specloop/verifier/db";
import { call } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const QUESTION = "def add(a, b):\n    # return the sum of a and b\n";
const N = 4;
/** Short answers keep the pairwise prompt (question + two answers) well inside the model's context. */
const MAX_TOKENS = 24;

let dir: TempDir;
let nats: NatsServer;
let bus: Bus;
let node: ServiceProcess;
let verifier: ServiceProcess;
let client: VerifierClient;
let dbPath: string;
let nodeMetrics: string;

before(async () => {
  dir = tempDir("specloop-verifier-solve-");
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  const busEnv = { SPECLOOP_BUS__URLS: nats.url };
  const metricsPort = await freePort();
  nodeMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
  node = await spawnNode(metricsPort);
  dbPath = join(dir.path, "verifier.sqlite");
  verifier = await spawnService("verifier", {
    env: {
      ...busEnv,
      SPECLOOP_STORE__PATH: dbPath,
      SPECLOOP_INFERENCE__ADDRESS: node.address,
      SPECLOOP_INFERENCE__SAMPLE_TIMEOUT_MS: "30000",
      SPECLOOP_TOURNAMENT__JUDGE_TIMEOUT_MS: "15000",
    },
  });
  client = new VerifierClient(verifier.address, credentials.createInsecure());
});

after(async () => {
  client?.close();
  await verifier?.stop();
  await node?.stop();
  await bus?.close();
  await nats?.stop();
  dir?.dispose();
});

/** An inference node on the bundled model and the cpu backend, kept light. */
function spawnNode(metricsPort = 0): Promise<ServiceProcess> {
  return spawnService("inference", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_NODE__BACKEND: "cpu",
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
      SPECLOOP_SERVER__METRICS_PORT: String(metricsPort),
    },
    timeoutMs: 60_000,
  });
}

/** Calls of one Inference method the node has answered OK, from its /metrics. */
async function nodeCalls(method: "Generate" | "Score"): Promise<number> {
  const text = await (await fetch(nodeMetrics)).text();
  const line = text
    .split("\n")
    .find(
      (l) =>
        l.startsWith("grpc_server_handled_total{") &&
        l.includes(`grpc_method="${method}"`) &&
        l.includes('grpc_code="OK"'),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Every message of a Solve stream, or the status it failed with. */
function solve(request: Partial<SolveRequest>): Promise<{ messages: SolveResponse[]; error?: ServiceError }> {
  return new Promise((resolve) => {
    const messages: SolveResponse[] = [];
    const stream = client.solve(SolveRequest.fromPartial(request));
    stream.on("data", (m: SolveResponse) => messages.push(m));
    stream.on("error", (error: ServiceError) => resolve({ messages, error }));
    stream.on("end", () => resolve({ messages }));
  });
}

async function verdictsOf(tournamentId: string, expected: number): Promise<PairwiseVerdict[]> {
  const seen: PairwiseVerdict[] = [];
  const consumer = await consumeVerdicts(bus, {
    durable: `verifier-solve-${tournamentId}`,
    logger: testLogger,
    handler: (v) => {
      if (v.tournamentId === tournamentId) seen.push(v);
      return "ack";
    },
  });
  try {
    await waitFor(`${expected} verdicts of ${tournamentId}`, () => seen.length >= expected);
  } finally {
    await consumer.stop();
  }
  return seen;
}

describe("verifier solve - against a real inference node", () => {
  test("verifier solve - N sampled candidates streamed, ranked by the pairwise judge, stored and published", async () => {
    const generated = await nodeCalls("Generate");
    const scored = await nodeCalls("Score");
    const { messages, error } = await solve({
      question: QUESTION,
      n: N,
      maxTokens: MAX_TOKENS,
      sampling: { temperature: 1, topP: 1, topK: 0, seed: "7", stopTokenIds: [], stop: [] },
      options: {
        judge: Judge.JUDGE_PAIRWISE,
        budget: 0,
        seed: "3",
        onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
      },
      domain: "python",
    });
    assert.equal(error, undefined, error?.details);

    // The stream as verifier.proto defines it: every candidate as it finishes sampling, then every
    // comparison as it is judged, then the finished tournament, last and once.
    const kinds = messages.map((m) => m.event?.$case);
    const firstComparison = kinds.indexOf("comparison");
    assert.deepEqual(kinds.slice(0, N), new Array(N).fill("candidate"));
    assert.ok(firstComparison >= N, "no comparison before every candidate is sampled");
    assert.equal(kinds.at(-1), "result");
    assert.equal(kinds.filter((k) => k === "result").length, 1);
    const sampled = messages.flatMap((m) => (m.event?.$case === "candidate" ? [m.event.value] : []));
    assert.deepEqual(
      sampled.map((c) => c.index).sort(),
      Array.from({ length: N }, (_, i) => i),
    );
    for (const c of sampled) {
      assert.ok(c.text.length > 0, `candidate ${c.index} has text`);
      assert.ok(
        (c.stats?.targetPasses ?? 0) > 0,
        `candidate ${c.index} reports the node's speculation stats`,
      );
    }
    assert.ok(
      new Set(sampled.map((c) => c.text)).size > 1,
      "sampling at temperature 1 gives different answers",
    );
    const streamed = messages.flatMap((m) => (m.event?.$case === "comparison" ? [m.event.value] : []));
    const last = messages.at(-1)?.event;
    assert.ok(last?.$case === "result");
    const t: Tournament = last.value;

    assert.equal(t.state, TournamentState.TOURNAMENT_STATE_DONE);
    assert.equal(t.judge, Judge.JUDGE_PAIRWISE);
    assert.equal(t.modelId, "tiny-code");
    assert.equal(t.seed, 3);
    assert.equal(t.question, QUESTION);
    assert.deepEqual(
      t.candidates,
      [...sampled].sort((x, y) => x.index - y.index).map((c) => c.text),
    );
    assert.deepEqual([...t.ranking].sort(), [0, 1, 2, 3], "the ranking covers every candidate once");
    assert.equal(t.scores.length, N);
    // 3N judge calls, but only N(N-1)/2 distinct pairs exist and none is judged twice.
    assert.equal(t.comparisons.length, Math.min(3 * N, (N * (N - 1)) / 2));
    assert.deepEqual(t.comparisons, streamed);
    for (const c of t.comparisons) assert.ok(c.pA >= 0 && c.pA <= 1, `p_a ${c.pA} is a probability`);
    assert.ok(t.comparisons.some((c) => c.phase === 1));
    // One Generate per candidate; one judge call is two Score calls, the pair in both orders.
    assert.equal((await nodeCalls("Generate")) - generated, N);
    assert.equal((await nodeCalls("Score")) - scored, 2 * t.comparisons.length);

    const got = await call<GetTournamentResponse>((cb) =>
      client.getTournament({ tournamentId: t.tournamentId }, cb),
    );
    assert.deepEqual(got.tournament, t);

    // The verifier's own SQLite file holds the same tournament.
    const store = openVerifierStore(dbPath);
    try {
      const row = await store.db.query.tournaments.findFirst({
        where: (x, { eq }) => eq(x.id, t.tournamentId),
      });
      assert.equal(row?.state, "done");
      assert.deepEqual(row?.candidates, t.candidates);
      const rows = await store.db.query.comparisons.findMany({
        where: (x, { eq }) => eq(x.tournamentId, t.tournamentId),
      });
      assert.equal(rows.length, t.comparisons.length);
    } finally {
      store.close();
    }

    // Every comparison is a verdict on SPECLOOP_VERDICTS, multi-line code answers included (NATS refuses a
    // newline in a header, so this holds only while the verdict's Nats-Msg-Id is a hash, not the texts).
    assert.ok(
      t.candidates.some((c) => c.includes("\n")),
      "some sampled answer spans several lines",
    );
    const verdicts = await verdictsOf(t.tournamentId, t.comparisons.length);
    assert.equal(verdicts.length, t.comparisons.length);
    for (const c of t.comparisons) {
      const v = verdicts.find(
        (x) => x.candidateA === t.candidates[c.a] && x.candidateB === t.candidates[c.b] && x.pA === c.pA,
      );
      assert.ok(v !== undefined, `a verdict for (${c.a}, ${c.b})`);
      assert.equal(v.judge, Judge.JUDGE_PAIRWISE);
      assert.equal(v.modelId, "tiny-code");
      assert.equal(v.question, QUESTION);
    }
  });

  test("verifier solve - Rank with the pairwise judge asks the node both orders and stays in budget", async () => {
    const candidates = [
      "    return a + b\n",
      "    return a - b\n",
      "    print('hello')\n",
      "    return b + a\n",
      "    pass\n",
    ];
    const budget = 6;
    const scored = await nodeCalls("Score");
    const res = await call<RankResponse>((cb) =>
      client.rank(
        {
          question: QUESTION,
          candidates,
          options: {
            judge: Judge.JUDGE_PAIRWISE,
            budget,
            seed: "5",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
          },
        },
        cb,
      ),
    );
    const t = res.tournament;
    assert.ok(t !== undefined);
    assert.equal(t.state, TournamentState.TOURNAMENT_STATE_DONE);
    assert.equal(t.comparisons.length, budget);
    assert.equal(t.budget, budget);
    assert.deepEqual([...t.ranking].sort(), [0, 1, 2, 3, 4]);
    for (const c of t.comparisons) assert.ok(c.pA >= 0 && c.pA <= 1, `p_a ${c.pA} is a probability`);
    assert.equal((await nodeCalls("Score")) - scored, 2 * budget, "each judge call asks both orders");
    // Both orders are asked and averaged: p = (P(first | a, b) + 1 - P(first | b, a)) / 2. A one-order
    // judge on this model would favour the first answer; averaging both gives pairs judged the other way
    // round complementary verdicts, which is checked by judging the same pair reversed.
    const pair = t.comparisons[0];
    assert.ok(pair !== undefined);
    const reversed = await call<RankResponse>((cb) =>
      client.rank(
        {
          question: QUESTION,
          candidates: [candidates[pair.b] as string, candidates[pair.a] as string],
          options: {
            judge: Judge.JUDGE_PAIRWISE,
            budget: 1,
            seed: "0",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
          },
        },
        cb,
      ),
    );
    const back = reversed.tournament?.comparisons[0];
    assert.ok(back !== undefined);
    const pFirstIsOldB = back.a === 0 ? back.pA : 1 - back.pA;
    assert.ok(Math.abs(pFirstIsOldB - (1 - pair.pA)) < 1e-4, `${pFirstIsOldB} vs 1 - ${pair.pA}`);
  });

  test("verifier solve - what the node refuses keeps its status: a max_tokens over its limit, answers too long to judge", async () => {
    const { messages, error } = await solve({ question: QUESTION, n: 2, maxTokens: 100_000 });
    assert.equal(error?.code, status.INVALID_ARGUMENT, error?.details);
    assert.match(error?.details ?? "", /max_tokens/);
    assert.equal(messages.length, 0);

    // Two answers of ~600 tokens each cannot share one pairwise prompt in the model's 1024 positions.
    const long = (c: string): string => `    return ${Array.from({ length: 300 }, () => c).join(" + ")}\n`;
    const err = await call<RankResponse>((cb) =>
      client.rank(
        {
          question: QUESTION,
          candidates: [long("a"), long("b")],
          options: {
            judge: Judge.JUDGE_PAIRWISE,
            budget: 0,
            seed: "1",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
          },
        },
        cb,
      ),
    ).then(
      () => assert.fail("Rank of answers longer than the judge's context succeeded"),
      (e: ServiceError) => e,
    );
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
    assert.match(err.details, /judge pairwise: .*context/);
  });

  test("verifier solve - with the tie policy, the pairs the node refuses are invented ties: marked, counted, never published", async () => {
    // Two long answers cannot share one pairwise prompt; a long and a short one can.
    const long = (c: string): string => `    return ${Array.from({ length: 300 }, () => c).join(" + ")}\n`;
    const candidates = ["    return a + b\n", long("a"), long("b")];
    const res = await call<RankResponse>((cb) =>
      client.rank(
        {
          question: QUESTION,
          candidates,
          options: {
            judge: Judge.JUDGE_PAIRWISE,
            budget: 0,
            seed: "2",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE,
          },
        },
        cb,
      ),
    );
    const t = res.tournament;
    assert.ok(t !== undefined);
    assert.equal(t.state, TournamentState.TOURNAMENT_STATE_DONE, t.error);
    assert.equal(t.comparisons.length, 3);
    const invented = t.comparisons.filter((c) => c.invented);
    assert.deepEqual(
      invented.map((c) => [c.a, c.b].sort()),
      [[1, 2]],
    );
    assert.equal(invented[0]?.pA, 0.5);
    assert.equal(t.realVerdicts, 2);
    const verdicts = await verdictsOf(t.tournamentId, 2);
    assert.equal(verdicts.length, 2);
    for (const v of verdicts) assert.ok(v.candidateA === candidates[0] || v.candidateB === candidates[0]);

    // When every judge call fails, invented ties rank nothing: the call fails and the tournament with it.
    const none = await call<RankResponse>((cb) =>
      client.rank(
        {
          question: QUESTION,
          candidates: [long("a"), long("b"), long("c")],
          options: {
            judge: Judge.JUDGE_PAIRWISE,
            budget: 0,
            seed: "3",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE,
          },
        },
        cb,
      ),
    ).then(
      () => assert.fail("a tournament of invented ties succeeded"),
      (e: ServiceError) => e,
    );
    assert.equal(none.code, status.UNAVAILABLE, none.details);
    assert.match(none.details, /none of its 3 judge calls gave a verdict/);
  });

  test("verifier solve - a node killed while sampling fails the Solve with UNAVAILABLE, and the tournament is stored as failed", async () => {
    const doomed = await spawnNode();
    const other = await spawnService("verifier", {
      env: {
        SPECLOOP_BUS__URLS: nats.url,
        SPECLOOP_STORE__PATH: join(dir.path, "doomed.sqlite"),
        SPECLOOP_INFERENCE__ADDRESS: doomed.address,
      },
    });
    const otherClient = new VerifierClient(other.address, credentials.createInsecure());
    try {
      const stream = otherClient.solve(
        SolveRequest.fromPartial({ question: QUESTION, n: 4, maxTokens: 600 }),
      );
      const outcome = new Promise<ServiceError | undefined>((resolve) => {
        stream.on("data", () => undefined);
        stream.on("error", resolve);
        stream.on("end", () => resolve(undefined));
      });
      // Killed once the verifier has its model id and is sampling (its tournament row says so).
      const watch = openVerifierStore(join(dir.path, "doomed.sqlite"));
      try {
        await waitFor("the Solve to start sampling", async () => {
          const row = await watch.db.query.tournaments.findFirst();
          return row?.state === "sampling";
        });
      } finally {
        watch.close();
      }
      doomed.child.kill("SIGKILL");
      const started = Date.now();
      const error = await outcome;
      assert.equal(error?.code, status.UNAVAILABLE, error?.details);
      assert.match(error?.details ?? "", /inference Generate/);
      assert.ok(Date.now() - started < 10_000, `failed ${Date.now() - started} ms after the kill`);
    } finally {
      otherClient.close();
      assert.equal(await other.stop(), 0);
      await doomed.stop();
    }
    const store = openVerifierStore(join(dir.path, "doomed.sqlite"));
    try {
      const rows = await store.db.query.tournaments.findMany();
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.state, "failed");
      assert.match(rows[0]?.error ?? "", /inference Generate/);
    } finally {
      store.close();
    }
  });

  test("verifier solve - with its inference node gone, Solve fails with UNAVAILABLE promptly", async () => {
    assert.equal(await node.stop(), 0);
    const started = Date.now();
    const { messages, error } = await solve({ question: QUESTION, n: 3, maxTokens: 8 });
    assert.equal(error?.code, status.UNAVAILABLE, error?.details);
    assert.match(error?.details ?? "", /inference/);
    assert.equal(messages.filter((m) => m.event?.$case === "result").length, 0);
    assert.ok(Date.now() - started < 10_000, `failed after ${Date.now() - started} ms`);
    // The verifier itself is still serving.
    const err = await call<GetTournamentResponse>((cb) =>
      client.getTournament({ tournamentId: "x" }, cb),
    ).catch((e: ServiceError) => e);
    assert.equal((err as ServiceError).code, status.NOT_FOUND);
  });
});
