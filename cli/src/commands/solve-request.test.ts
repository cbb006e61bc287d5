import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Judge, JudgeFailurePolicy } from "@specloop/proto";
import { type TempDir, tempDir } from "@specloop/testkit";
import { CliError, EXIT } from "../exit-codes.js";
import { parseTestsFile, type SolveOptions, solveRequest, verifierToken } from "./solve-request.js";

let dir: TempDir;
before(() => {
  dir = tempDir("specloop-solve-request-");
});
after(() => dir?.dispose());

function file(name: string, text: string): string {
  const path = join(dir.path, name);
  writeFileSync(path, text);
  return path;
}

const refused = (code: number, message: RegExp) => (err: unknown) =>
  err instanceof CliError && err.exitCode === code && message.test(err.message);

const BASE: SolveOptions = {
  server: "127.0.0.1:1",
  question: "def add(a, b):",
  n: 3,
  maxTokens: 8,
  temperature: 1,
  topP: 0.95,
  judge: "pairwise",
  budget: 0,
  domain: "python",
  timeout: 1_000,
};

test("solve request - the verifier token is the flag's, a file's text, or a tokens YAML's run-code entry", () => {
  assert.equal(verifierToken({}), undefined);
  assert.equal(verifierToken({ token: " run-code-token-0123456789 " }), "run-code-token-0123456789");
  assert.equal(
    verifierToken({ tokenFile: file("plain", "run-code-token-0123456789\n") }),
    "run-code-token-0123456789",
  );
  const yaml = file(
    "tokens.yaml",
    "- identity: ops\n  roles: [admin]\n  token: not-this-one-0123456789\n" +
      "- identity: ci\n  roles: [run-code]\n  token: the-run-code-token-0123456789\n",
  );
  assert.equal(verifierToken({ tokenFile: yaml }), "the-run-code-token-0123456789");
  assert.throws(
    () => verifierToken({ tokenFile: file("admin.yaml", "- identity: ops\n  roles: [admin]\n  token: t\n") }),
    refused(EXIT.auth, /no entry with the run-code role/),
  );
  assert.throws(
    () => verifierToken({ tokenFile: join(dir.path, "absent") }),
    refused(EXIT.auth, /cannot read/),
  );
  assert.throws(() => verifierToken({ token: "a", tokenFile: yaml }), refused(EXIT.usage, /one of --token/));
});

test("solve request - a tests file reads as TestsJudgeOptions; a wrong one is refused naming the key", () => {
  assert.deepEqual(
    parseTestsFile(
      "t.yaml",
      'language: python\ntime_limit_ms: 500\ncases:\n  - stdin: "1 2\\n"\n    expected_stdout: "3\\n"\n',
    ),
    {
      language: "python",
      cases: [{ name: "case 0", stdin: "1 2\n", expectedStdout: "3\n" }],
      timeLimitMs: 500,
      memoryLimitMb: 0,
    },
  );
  // JSON is YAML too.
  assert.equal(
    parseTestsFile("t.json", '{"language": "javascript", "cases": [{"name": "x", "expected_stdout": "1"}]}')
      .language,
    "javascript",
  );
  for (const [text, message] of [
    ["- a\n", /expected a mapping/],
    ["language: python\ncases: []\n", /cases: expected a list/],
    ["cases: [{stdin: x}]\n", /language: expected a string/],
    ["language: python\ntimeout: 3\ncases: [{stdin: x}]\n", /unknown keys timeout/],
    ["language: python\ncases: [{stdin: x, expected: y}]\n", /cases\[0\]: unknown keys expected/],
    ["language: python\ncases: [{stdin: 3}]\n", /cases\[0\]\.stdin: expected a string/],
    ["language: python\nmemory_limit_mb: -1\ncases: [{stdin: x}]\n", /memory_limit_mb: expected an integer/],
    ["language: [unclosed\n", /not YAML or JSON/],
  ] as const) {
    assert.throws(() => parseTestsFile("t.yaml", text), refused(EXIT.usage, message), text);
  }
});

test("solve request - one seed for sampling and the tournament; --tests only with the tests judge", () => {
  const r = solveRequest({ ...BASE, seed: 7, onJudgeFailure: "tie" });
  assert.equal(r.sampling?.seed, "7");
  assert.equal(r.sampling?.temperature, 1);
  assert.equal(r.options?.seed, "7");
  assert.equal(r.options?.judge, Judge.JUDGE_PAIRWISE);
  assert.equal(r.options?.onJudgeFailure, JudgeFailurePolicy.JUDGE_FAILURE_POLICY_TIE);
  assert.equal(r.domain, "python");
  const unseeded = solveRequest({ ...BASE, judge: "pointwise" });
  assert.equal(unseeded.sampling?.seed, undefined);
  assert.equal(unseeded.options?.seed, undefined);
  assert.equal(unseeded.options?.judge, Judge.JUDGE_POINTWISE);
  assert.equal(unseeded.options?.onJudgeFailure, JudgeFailurePolicy.JUDGE_FAILURE_POLICY_UNSPECIFIED);

  const tests = file("tests.yaml", "language: python\ncases: [{stdin: '', expected_stdout: '1'}]\n");
  const withTests = solveRequest({ ...BASE, judge: "tests", tests });
  assert.equal(withTests.options?.judge, Judge.JUDGE_TESTS);
  assert.equal(withTests.options?.tests?.cases.length, 1);
  assert.throws(() => solveRequest({ ...BASE, judge: "tests" }), refused(EXIT.usage, /--tests FILE/));
  assert.throws(() => solveRequest({ ...BASE, tests }), refused(EXIT.usage, /--tests FILE/));
  assert.throws(() => solveRequest({ ...BASE, question: "  " }), refused(EXIT.usage, /--question/));
});
