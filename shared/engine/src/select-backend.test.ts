import assert from "node:assert/strict";
import { test } from "node:test";
import { selectBackend } from "./select-backend.js";

test("select backend - giving cpu options keeps the engine's own webgpu backend", async () => {
  // A factories object with only `cpu` once replaced the default webgpu factory and broke --backend webgpu.
  const selected = await selectBackend("webgpu", { cpu: { threads: 1 } });
  try {
    assert.equal(selected.used, "webgpu");
    assert.equal(selected.backend.kind, "webgpu");
  } finally {
    selected.backend.destroy();
  }
});

test("select backend - cpu honours its thread count and says so", async () => {
  const selected = await selectBackend("cpu", { cpu: { threads: 1 } });
  try {
    assert.equal(selected.used, "cpu");
    assert.match(selected.notes.join("\n"), /on 1 thread\b/);
  } finally {
    selected.backend.destroy();
  }
});

test("select backend - reference is the plain TypeScript backend", async () => {
  const selected = await selectBackend("reference");
  assert.equal(selected.used, "reference");
  assert.equal(selected.backend.kind, "reference");
  selected.backend.destroy();
});
