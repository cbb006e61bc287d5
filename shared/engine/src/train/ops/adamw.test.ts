// AdamW and the global gradient-norm clip against values worked by hand from PyTorch's documented
// algorithms (torch.optim.AdamW, torch.nn.utils.clip_grad_norm_).
import assert from "node:assert/strict";
import { test } from "node:test";
import { adamwStep, gradNorm, newAdamWState } from "./adamw.js";

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test("adamw - two steps of a constant gradient with decoupled weight decay, worked by hand", () => {
  // w = 1, g = 0.5, lr 0.1, betas (0.9, 0.999), wd 0.01. Step 1: m = 0.05, v = 0.00025, m^ = 0.5,
  // v^ = 0.25, so w = 1 * (1 - 0.001) - 0.1 * 0.5 / 0.5 = 0.899. Step 2: m^ = 0.5 and v^ = 0.25 again
  // (a constant gradient), w = 0.899 * 0.999 - 0.1 = 0.798101.
  const w = Float32Array.of(1);
  const s = newAdamWState(1);
  const o = { lr: 0.1, betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 0.01, gradClip: 0 };
  adamwStep(w, Float32Array.of(0.5), s, o);
  close(w[0]!, 0.899);
  close(s.m[0]!, 0.05);
  close(s.v[0]!, 0.00025, 1e-9);
  adamwStep(w, Float32Array.of(0.5), s, o);
  close(w[0]!, 0.798101);
  assert.equal(s.step, 2);
});

test("adamw - a gradient that changes sign: the bias-corrected moments, worked by hand", () => {
  // g = 1 then -1, lr 0.01, betas (0.5, 0.75), no decay. Step 1: m^ = 1, v^ = 1, w = 2 - 0.01 = 1.99.
  // Step 2: m = 0.5 * 0.5 - 0.5 = -0.25, m^ = -0.25 / 0.75 = -1/3; v = 0.75 * 0.25 + 0.25 = 0.4375,
  // v^ = 0.4375 / 0.4375 = 1; w = 1.99 + 0.01 / 3 = 1.9933333.
  const w = Float32Array.of(2);
  const s = newAdamWState(1);
  const o = { lr: 0.01, betas: [0.5, 0.75] as const, eps: 1e-8, weightDecay: 0, gradClip: 0 };
  adamwStep(w, Float32Array.of(1), s, o);
  close(w[0]!, 1.99);
  adamwStep(w, Float32Array.of(-1), s, o);
  close(w[0]!, 1.9933333);
});

test("adamw - the global norm clip scales every gradient by clip / (norm + 1e-6) and reports the norm before it; decay only where the mask says", () => {
  const w = Float32Array.of(1, 1, 1);
  const g = Float32Array.of(3, 4, 0);
  const s = newAdamWState(3);
  const norm = adamwStep(
    w,
    g,
    s,
    { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.5, gradClip: 1 },
    Uint8Array.of(1, 0, 1),
  );
  assert.equal(norm, 5);
  close(g[0]!, 3 / (5 + 1e-6));
  close(g[1]!, 4 / (5 + 1e-6));
  close(gradNorm(g), 1, 1e-6);
  // Each Adam step of a nonzero gradient is lr; the masked-out parameter is not decayed; the third had no
  // gradient: decay alone moves it.
  close(w[0]!, 1 * (1 - 0.05) - 0.1);
  close(w[1]!, 1 - 0.1);
  close(w[2]!, 1 * (1 - 0.05));
  // Below the clip the gradient is left alone.
  const g2 = Float32Array.of(0.3, 0.4, 0);
  adamwStep(w, g2, s, { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, gradClip: 1 });
  assert.deepEqual(g2, Float32Array.of(0.3, 0.4, 0));
});

test("adamw - a non-finite gradient is refused before any weight moves", () => {
  const w = Float32Array.of(1, 2);
  const s = newAdamWState(2);
  const o = { lr: 0.1, betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 0, gradClip: 1 };
  assert.throws(() => adamwStep(w, Float32Array.of(Number.NaN, 1), s, o), /gradient norm is NaN/);
  assert.deepEqual(w, Float32Array.of(1, 2));
  assert.equal(s.step, 0);
});
