import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultInvFreq, llama3InvFreq } from "./rope.js";

test("rope: default inverse frequencies are 1 / theta^(2i / d)", () => {
  const f = defaultInvFreq(8, 10000);
  assert.deepEqual(Array.from(f), [1, 0.1, 0.01, 0.001].map(Math.fround));
});

test("rope: llama3 scaling keeps high frequencies, divides low ones, interpolates between", () => {
  // Wavelengths 2*pi/f: ~6.3 (kept), ~62.8 (between 32 and 128: smoothed), ~628 (divided by 8).
  const base = Float32Array.from([1, 0.1, 0.01]);
  const s = {
    type: "llama3" as const,
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 128,
  };
  const out = llama3InvFreq(base, s);
  assert.equal(out[0], 1);
  assert.equal(out[2], Math.fround(0.01 / 8));
  const smooth = (128 / ((2 * Math.PI) / Math.fround(0.1)) - 1) / 3;
  const expected = (1 - smooth) * (Math.fround(0.1) / 8) + smooth * Math.fround(0.1);
  assert.ok(Math.abs(out[1]! - expected) < 1e-8);
});
