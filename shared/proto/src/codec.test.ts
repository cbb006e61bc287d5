import assert from "node:assert/strict";
import { test } from "node:test";
import { Drafter, GenerateRequest, Trace, type VerificationStep } from "@specloop/proto";

test("proto - trace round-trips through the binary codec with tree parents intact", () => {
  const step: VerificationStep = {
    outputOffset: 3,
    speculatorVersion: "v7",
    drafter: Drafter.DRAFTER_SUFFIX,
    proposedTokenIds: [10, 11, 12],
    parents: [-1, 0, 0],
    draftProbs: [0.5, 0.25, 0.125],
    acceptedIndices: [0, 2],
    bonusTokenId: 99,
    topk: 2,
    targetTopkIds: [10, 1, 11, 2, 12, 3],
    targetTopkLogprobs: [-0.1, -2, -0.3, -1.5, -0.2, -1.8],
  };
  const trace = Trace.fromPartial({ traceId: "r1:0", requestId: "r1", steps: [step], final: true });
  const decoded = Trace.decode(Trace.encode(trace).finish());
  assert.deepEqual(decoded.steps[0]?.parents, [-1, 0, 0]);
  assert.equal(decoded.steps[0]?.drafter, Drafter.DRAFTER_SUFFIX);
  assert.equal(decoded.final, true);
});

test("proto - JSON form uses proto field names and enum names", () => {
  const json = GenerateRequest.toJSON(
    GenerateRequest.fromPartial({ prompt: "def f(", speculation: { drafter: Drafter.DRAFTER_NONE } }),
  ) as Record<string, unknown>;
  assert.equal(json.prompt, "def f(");
  assert.deepEqual(json.speculation, { drafter: "DRAFTER_NONE" });
});
