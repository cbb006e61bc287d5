// `specloop solve` as an operator runs it: the CLI process against a real verifier process that samples from
// a real inference node process (the bundled model on the cpu backend), with a real nats-server. What the
// CLI prints is checked against the tournament the verifier stored (GetTournament), not against itself.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { credentials } from "@grpc/grpc-js";
import { runCli } from "@specloop/cli/testing";
import {
  type GetTournamentResponse,
  type Tournament,
  TournamentState,
  VerifierClient,
} from "@specloop/proto";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { call } from "./harness/grpc.js";
import { type ServiceProcess, spawnService } from "./harness/service-process.js";

const QUESTION = "def add(a, b):\n    # return the sum of a and b\n";
/** Three short answers: three pairs to judge, a few seconds on two loaded cores. */
const N = 3;
const MAX_TOKENS = "8";
const RUN_CODE_TOKEN = "cli-solve-run-code-token-0123456789";
const READER_TOKEN = "cli-solve-reader-token-0123456789";

let dir: TempDir;
let nats: NatsServer;
let node: ServiceProcess;
let verifier: ServiceProcess;
let client: VerifierClient;
let tokensFile: string;
let testsFile: string;

before(async () => {
  dir = tempDir("specloop-cli-solve-");
  nats = await startNatsServer();
  node = await spawnService("inference", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_NODE__BACKEND: "cpu",
      SPECLOOP_NODE__CPU_THREADS: "1",
      SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
    },
    timeoutMs: 60_000,
  });
  // The verifier's tokens list, as npm start writes it; the run-code entry is not the first.
  tokensFile = join(dir.path, "verifier-tokens.yaml");
  writeFileSync(
    tokensFile,
    `- identity: reader\n  roles: [read]\n  token: ${READER_TOKEN}\n` +
      `- identity: ci\n  roles: [run-code]\n  token: ${RUN_CODE_TOKEN}\n`,
  );
  // Over the verifier's maximum time limit (10 s): refused once the token is accepted, before any sandbox.
  testsFile = join(dir.path, "tests.yaml");
  writeFileSync(
    testsFile,
    'language: python\ntime_limit_ms: 999999\ncases:\n  - name: adds\n    stdin: "1 2\\n"\n    expected_stdout: "3\\n"\n',
  );
  verifier = await spawnService("verifier", {
    env: {
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_STORE__PATH: join(dir.path, "verifier.sqlite"),
      SPECLOOP_INFERENCE__ADDRESS: node.address,
      SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokensFile,
    },
    timeoutMs: 60_000,
  });
  client = new VerifierClient(verifier.address, credentials.createInsecure());
});

after(async () => {
  client?.close();
  await verifier?.stop();
  await node?.stop();
  await nats?.stop();
  dir?.dispose();
});

function solve(args: string[], env: Record<string, string> = {}) {
  return runCli(["solve", "--question", QUESTION, "--max-tokens", MAX_TOKENS, ...args], {
    env: { SPECLOOP_VERIFIER_ADDRESS: verifier.address, ...env },
  });
}

async function stored(id: string): Promise<Tournament> {
  const res = await call<GetTournamentResponse>((cb) => client.getTournament({ tournamentId: id }, cb));
  assert.ok(res.tournament !== undefined);
  return res.tournament;
}

const indented = (text: string): string =>
  text
    .replace(/\n$/, "")
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");

describe("cli solve - against a real verifier and inference node", () => {
  test("cli solve - streams each candidate with its stats, each comparison, then the ranking and the chosen answer", async () => {
    const r = await solve(["--n", String(N), "--seed", "5", "--domain", "python"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const at = (re: RegExp): number[] => lines.flatMap((l, i) => (re.test(l) ? [i] : []));
    const sampledAt = at(/^sampled \d+\/3: candidate \d+, \d+ target passes, [\d.]+ tokens per pass, /);
    const judgedAt = at(
      /^judged \d+: candidate \d+ vs \d+, p\(\d+ better\) = [01]\.\d{3} \((coverage|swiss)\)$/,
    );
    const headerAt = at(/^tournament \S+: pairwise judge, /);
    assert.equal(sampledAt.length, N, r.stdout);
    assert.ok(judgedAt.length > 0, r.stdout);
    assert.equal(headerAt.length, 1, r.stdout);
    // Streamed in the order verifier.proto sends: every candidate, then every comparison, then the result.
    assert.ok(Math.max(...sampledAt) < Math.min(...judgedAt), r.stdout);
    assert.ok(Math.max(...judgedAt) < (headerAt[0] as number), r.stdout);

    const id = /^tournament (\S+):/.exec(lines[headerAt[0] as number] as string)?.[1] as string;
    const t = await stored(id);
    assert.equal(t.state, TournamentState.TOURNAMENT_STATE_DONE);
    assert.equal(t.seed, 5);
    // Each candidate's text printed under its line is the one the verifier stored.
    const printed = sampledAt.map((i) => Number(/candidate (\d+),/.exec(lines[i] as string)?.[1]));
    assert.deepEqual([...printed].sort(), [0, 1, 2]);
    for (const index of printed) {
      assert.ok(r.stdout.includes(indented(t.candidates[index] as string)), `candidate ${index}'s text`);
    }
    const judged = judgedAt.map((i) => {
      const m = /candidate (\d+) vs (\d+), p\(\d+ better\) = ([\d.]+)/.exec(lines[i] as string);
      return [Number(m?.[1]), Number(m?.[2]), Number(m?.[3])];
    });
    assert.deepEqual(
      judged,
      t.comparisons.map((c) => [c.a, c.b, Number(c.pA.toFixed(3))]),
    );
    // The ranking table, best first, then the chosen answer: the stored ranking's first.
    const rows = lines
      .slice((headerAt[0] as number) + 2, (headerAt[0] as number) + 2 + N)
      .map((l) => l.trim().split(/\s+/).map(Number));
    assert.deepEqual(
      rows.map(([rank, index]) => [rank, index]),
      t.ranking.map((index, k) => [k + 1, index]),
    );
    const chosen = t.ranking[0] as number;
    assert.match(r.stdout, new RegExp(`^chosen: candidate ${chosen}$`, "m"));
    assert.ok(r.stdout.trimEnd().endsWith(indented(t.candidates[chosen] as string)), r.stdout);
  });

  test("cli solve - --json prints one document: chosen within range, the ranking a permutation, as stored", async () => {
    const r = await solve(["--n", String(N), "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").length, 1, "one JSON document, nothing streamed before it");
    const out = JSON.parse(r.stdout);
    assert.equal(out.state, "TOURNAMENT_STATE_DONE");
    assert.equal(out.judge, "JUDGE_PAIRWISE");
    assert.equal(out.question, QUESTION);
    assert.ok(Number.isInteger(out.chosen.index) && out.chosen.index >= 0 && out.chosen.index < N);
    assert.deepEqual([...out.ranking].sort(), [0, 1, 2], "the ranking covers every candidate once");
    assert.equal(out.chosen.index, out.ranking[0]);
    assert.deepEqual(
      out.candidates.map((c: { index: number }) => c.index),
      [0, 1, 2],
    );
    assert.equal(out.chosen.text, out.candidates[out.chosen.index].text);
    for (const c of out.candidates) {
      assert.ok(c.stats.target_passes > 0, `candidate ${c.index} carries the node's speculation stats`);
      assert.ok(c.stats.target_passes <= Number(MAX_TOKENS));
    }
    // Budget 0 asks for 3N judge calls; three candidates have only three pairs, and a done tournament's
    // budget is the calls it made.
    assert.equal(out.budget, 3);
    assert.equal(out.comparisons.length, 3);
    assert.equal(out.real_verdicts, 3);
    for (const c of out.comparisons) assert.ok(c.p_a >= 0 && c.p_a <= 1, `p_a ${c.p_a}`);
    const t = await stored(out.tournament_id);
    assert.deepEqual(out.ranking, t.ranking);
    assert.deepEqual(
      out.candidates.map((c: { text: string }) => c.text),
      t.candidates,
    );
    assert.deepEqual(
      out.comparisons.map((c: { a: number; b: number; p_a: number }) => [c.a, c.b, c.p_a]),
      t.comparisons.map((c) => [c.a, c.b, c.pA]),
    );
  });

  test("cli solve - the tests judge: no token exits 4 and says which variable, a token without run-code exits 4, the tokens YAML's run-code entry gets through", async () => {
    const tests = ["--n", "2", "--judge", "tests", "--tests", testsFile];
    const none = await solve(tests);
    assert.equal(none.code, 4, none.stderr);
    assert.match(
      none.stderr,
      /UNAUTHENTICATED.*run-code role: --token-file FILE or SPECLOOP_VERIFIER_TOKEN_FILE/,
    );
    assert.equal(none.stdout, "");

    const reader = await solve(tests, { SPECLOOP_VERIFIER_TOKEN: READER_TOKEN });
    assert.equal(reader.code, 4, reader.stderr);
    assert.match(reader.stderr, /PERMISSION_DENIED.*run-code/);

    // Authorized, so the verifier reads the tests and refuses their time limit: the verifier's reason, exit 1.
    const authorized = await solve(tests, { SPECLOOP_VERIFIER_TOKEN_FILE: tokensFile });
    assert.equal(authorized.code, 1, authorized.stderr);
    assert.match(authorized.stderr, /INVALID_ARGUMENT: .*time_limit_ms/);
  });

  test("cli solve - exit codes: a refused request 1 with the reason, a bad command line 2, nobody listening 3", async () => {
    const refused = await solve(["--n", "2", "--max-tokens", "100000"]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /^specloop solve: 127\.0\.0\.1:\d+: INVALID_ARGUMENT: .*max_tokens/);

    for (const bad of [
      ["--n", "0"],
      ["--judge", "majority"],
      ["--judge", "tests"],
      ["--tests", testsFile],
    ]) {
      const r = await solve(bad);
      assert.equal(r.code, 2, `${bad.join(" ")}: ${r.stderr}`);
    }

    const nobody = await solve(["--server", `127.0.0.1:${await freePort()}`]);
    assert.equal(nobody.code, 3, nobody.stderr);
    assert.match(nobody.stderr, /unreachable/);
  });
});
