import assert from "node:assert/strict";
import { test } from "node:test";
import { ARGS, CLAIM, DONE } from "./control.js";
import * as abi from "./kernel-abi.js";

test("cpu kernel abi - a job's slots fit between ARGS and DONE's cache line", () => {
  // The arguments are written before a job and only read during it; DONE and CLAIM are written by every
  // thread during it, so they must not share a cache line (16 slots) with the arguments.
  assert.ok(ARGS + abi.JOB_SLOTS <= DONE, `${ARGS} + ${abi.JOB_SLOTS} > ${DONE}`);
  assert.equal(DONE % 16, 0);
  assert.ok(CLAIM >= DONE + 16);
  const attention = Object.entries(abi).filter(([name]) => name.startsWith("ATT_"));
  for (const [name, slot] of attention) assert.ok(slot < abi.JOB_SLOTS, name);
  assert.ok(abi.TOPK_K < abi.JOB_FIXED);
});

test("cpu kernel abi - modes and dtype codes are distinct; NO_CHUNK is the claim word's whole chunk field", () => {
  const modes = [abi.MODE_LINEAR, abi.MODE_SILU_MUL, abi.MODE_ADD, abi.MODE_TOPK, abi.MODE_ATTENTION];
  assert.equal(new Set(modes).size, modes.length);
  assert.equal(new Set([abi.DTYPE_F32, abi.DTYPE_F16, abi.DTYPE_BF16]).size, 3);
  assert.equal(abi.NO_CHUNK, abi.CHUNK_MASK);
  assert.equal(abi.CHUNK_MASK, 2 ** abi.TAG_SHIFT - 1);
});

test("cpu kernel abi - every constant is an integer (AssemblyScript compiles this file too, as i32)", () => {
  for (const [name, value] of Object.entries(abi)) {
    assert.ok(Number.isInteger(value) && value >= 0 && value < 2 ** 31, name);
  }
});
