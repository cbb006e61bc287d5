import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Bus, publishVerdict } from "@specloop/bus";
import { openTestBus, testBusConfig } from "@specloop/bus/internal";
import { Judge, PairwiseVerdict } from "@specloop/proto";
import { type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { runCli } from "../run-cli.testing.js";

let nats: NatsServer;
let bus: Bus;
let dir: TempDir;
before(async () => {
  nats = await startNatsServer();
  bus = await openTestBus(testBusConfig(nats.url));
  dir = tempDir("specloop-cli-verdicts-");
});
after(async () => {
  await bus.close();
  await nats.stop();
  dir.dispose();
});

const verdict = (tournamentId: string, modelId: string, pA: number) =>
  PairwiseVerdict.fromPartial({
    tournamentId,
    question: "2 + 2?",
    candidateA: "4",
    candidateB: "5",
    pA,
    judge: Judge.JUDGE_PAIRWISE,
    modelId,
    judgedAt: new Date(Date.UTC(2026, 0, 1)),
  });

test("cli verdicts - export writes every verdict as a JSON line, oldest first, and --model filters", async () => {
  const empty = await runCli(["verdicts", "export", "--nats", nats.url]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.equal(empty.stdout, "");

  await publishVerdict(bus.js, verdict("t1", "tiny-code", 0.75));
  await publishVerdict(bus.js, verdict("t2", "other", 0.25));
  await publishVerdict(bus.js, verdict("t3", "tiny-code", 1));

  const all = await runCli(["verdicts", "export", "--nats", nats.url]);
  assert.equal(all.code, 0, all.stderr);
  const lines = all.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => l.tournament_id),
    ["t1", "t2", "t3"],
  );
  assert.deepEqual(lines[0], {
    tournament_id: "t1",
    question: "2 + 2?",
    candidate_a: "4",
    candidate_b: "5",
    p_a: 0.75,
    judge: "JUDGE_PAIRWISE",
    model_id: "tiny-code",
    judged_at: "2026-01-01T00:00:00.000Z",
  });

  const out = join(dir.path, "tiny.jsonl");
  const one = await runCli(["verdicts", "export", "--nats", nats.url, "--model", "tiny-code", "--out", out]);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stderr, /2 verdicts written/);
  assert.deepEqual(
    readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).tournament_id),
    ["t1", "t3"],
  );
});

test("cli verdicts - an unreachable NATS is a one-line error and exit 3", async () => {
  const res = await runCli(["verdicts", "export", "--nats", "nats://127.0.0.1:1"]);
  assert.equal(res.code, 3);
  assert.match(res.stderr, /specloop verdicts export: .*cannot connect/);
});
