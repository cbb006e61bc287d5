import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Judge, PairwiseVerdict } from "@specloop/proto";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import type { Bus } from "./connection.js";
import { InvalidMessageError } from "./errors.js";
import { consumeVerdicts } from "./subscriptions.js";
import { openTestBus, testBusConfig, testLogger, waitFor } from "./test-support.js";
import { publishVerdict, verdictId } from "./traces.js";

let server: NatsServer;
let bus: Bus;

before(async () => {
  server = await startNatsServer();
  bus = await openTestBus(testBusConfig(server.url));
});

after(async () => {
  await bus?.close();
  await server?.stop();
});

/** Two multi-line code answers, as the verifier's Solve samples them. */
function verdict(overrides: Partial<PairwiseVerdict> = {}): PairwiseVerdict {
  return PairwiseVerdict.fromPartial({
    tournamentId: "t-multiline",
    question: "def add(a, b):\n",
    candidateA: "def add(a, b):\n    return a + b\n",
    candidateB: "def add(a, b):\r\n    return a - b\n\n# done",
    pA: 0.8,
    judge: Judge.JUDGE_PAIRWISE,
    modelId: "tiny-code",
    judgedAt: new Date(1_700_000_000_000),
    ...overrides,
  });
}

test("bus verdicts - verdictId is a sha256 hex, stable, and differs by tournament, index, texts and order", () => {
  const v = verdict();
  const id = verdictId(v, 0);
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.equal(verdictId(verdict(), 0), id, "the same verdict has the same id");
  assert.equal(verdictId(v, 0), verdictId({ ...v, pA: 0.1 }, 0), "the id names the pair, not the outcome");
  const others = [
    verdictId(v),
    verdictId(v, 1),
    verdictId({ ...v, tournamentId: "t-other" }, 0),
    verdictId({ ...v, candidateA: v.candidateB, candidateB: v.candidateA }, 0),
    verdictId({ ...v, candidateA: `${v.candidateA}x` }, 0),
    // Moving text across the boundary between fields gives another id (the fields are length-prefixed).
    verdictId({ ...v, candidateA: "ab", candidateB: "c" }, 0),
    verdictId({ ...v, candidateA: "a", candidateB: "bc" }, 0),
  ];
  assert.equal(new Set([id, ...others]).size, others.length + 1);
});

test("bus verdicts - a multi-line verdict is published, de-duplicated by its id and consumed intact", async () => {
  const v = verdict();
  const first = await publishVerdict(bus.js, v, { index: 0 });
  assert.equal(first.duplicate, false);
  const again = await publishVerdict(bus.js, v, { index: 0 });
  assert.equal(again.duplicate, true, "a re-publish of the same comparison is dropped");
  assert.equal(again.seq, first.seq);
  // The same texts judged again in the same tournament (two samples gave the same answer) are kept.
  const twin = await publishVerdict(bus.js, { ...v, pA: 0.6 }, { index: 1 });
  assert.equal(twin.duplicate, false);

  const seen: PairwiseVerdict[] = [];
  const consumer = await consumeVerdicts(bus, {
    durable: "bus-verdicts-test",
    modelId: "tiny-code",
    logger: testLogger,
    handler: (got) => {
      seen.push(got);
      return "ack";
    },
  });
  try {
    await waitFor("both verdicts", () => seen.length === 2);
  } finally {
    await consumer.stop();
  }
  assert.deepEqual(seen, [v, { ...v, pA: 0.6 }]);
});

test("bus verdicts - a verdict with an empty candidate is refused before it reaches the bus", async () => {
  await assert.rejects(publishVerdict(bus.js, verdict({ candidateB: "" })), InvalidMessageError);
});
