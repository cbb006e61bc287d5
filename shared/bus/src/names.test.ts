import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidBusNameError } from "./errors.js";
import {
  heartbeatKey,
  SPECULATOR_BUCKET,
  sanitizeToken,
  slotOfSpeculatorKey,
  speculatorKey,
  speculatorKeyFilter,
  traceSubject,
  unsanitizeToken,
  verdictSubject,
  weightsObjectName,
} from "./names.js";

test("bus names - model ids become one valid, reversible token", () => {
  assert.equal(sanitizeToken("tiny-code"), "tiny-code");
  assert.equal(sanitizeToken("Qwen/Qwen2.5-0.5B"), "Qwen_2FQwen2_2E5-0_2E5B");
  assert.equal(sanitizeToken("a_b"), "a_5Fb");
  assert.equal(sanitizeToken("a b*>"), "a_20b_2A_3E");
  assert.equal(sanitizeToken("é"), "_C3_A9");
  for (const id of ["tiny-code", "Qwen/Qwen2.5-0.5B", "a_b", "a.b", "a b*>", "é", "_2F"]) {
    const token = sanitizeToken(id);
    assert.match(token, /^[A-Za-z0-9_-]+$/);
    assert.equal(unsanitizeToken(token), id);
  }
  // Injective: ids that a naive replacement would merge stay apart.
  assert.notEqual(sanitizeToken("a.b"), sanitizeToken("a_b"));
  assert.notEqual(sanitizeToken("a/b"), sanitizeToken("a.b"));
  assert.throws(() => sanitizeToken(""), InvalidBusNameError);
  assert.throws(() => unsanitizeToken("a.b"), InvalidBusNameError);
});

test("bus names - subjects, keys and object names", () => {
  assert.equal(traceSubject("Qwen/Qwen3-0.6B"), "specloop.traces.Qwen_2FQwen3-0_2E6B");
  assert.equal(verdictSubject("tiny-code"), "specloop.verdicts.tiny-code");
  assert.equal(speculatorKey("Qwen/Qwen3-0.6B", "live"), "Qwen_2FQwen3-0_2E6B.live");
  assert.equal(speculatorKey("tiny-code", "canary"), "tiny-code.canary");
  assert.equal(speculatorKeyFilter("tiny-code"), "tiny-code.*");
  assert.equal(slotOfSpeculatorKey("tiny-code.canary"), "canary");
  assert.equal(slotOfSpeculatorKey("tiny-code.other"), undefined);
  assert.equal(heartbeatKey("node.1"), "node_2E1");
  assert.equal(weightsObjectName("tiny-code", "v1.2"), "tiny-code/v1_2E2.safetensors");
  assert.match(SPECULATOR_BUCKET, /^[A-Za-z0-9_-]+$/);
});
