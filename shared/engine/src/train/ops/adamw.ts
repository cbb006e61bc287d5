// AdamW (Loshchilov & Hutter; PyTorch's torch.optim.AdamW) on fp32 master weights, after clipping the
// global gradient norm (torch.nn.utils.clip_grad_norm_): every parameter lives in one flat Float32Array
// with its gradient and moments beside it, so the norm, the clip and the update are single passes.
//   g <- g * min(1, clip / ||g||)                         (clip 0: off)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   w <- w - lr * wd * w     (decoupled decay, only where decayMask is 1: matrices, not norm gains)
//   w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

export interface AdamWOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  /** Largest global gradient norm; 0 turns clipping off. */
  gradClip: number;
}

export interface AdamWState {
  m: Float32Array;
  v: Float32Array;
  /** Updates taken so far (t of the bias corrections). */
  step: number;
}

export function newAdamWState(size: number): AdamWState {
  return { m: new Float32Array(size), v: new Float32Array(size), step: 0 };
}

/** The L2 norm of a flat gradient, summed in f64. */
export function gradNorm(grad: Float32Array): number {
  let sq = 0;
  for (let i = 0; i < grad.length; i++) sq += grad[i]! * grad[i]!;
  return Math.sqrt(sq);
}

/**
 * One update of `params` in place from `grad` (clipped in place); returns the gradient's norm before
 * clipping. decayMask[i] = 1 where weight decay applies.
 */
export function adamwStep(
  params: Float32Array,
  grad: Float32Array,
  state: AdamWState,
  options: AdamWOptions,
  decayMask?: Uint8Array,
): number {
  const n = params.length;
  if (
    grad.length !== n ||
    state.m.length !== n ||
    state.v.length !== n ||
    (decayMask && decayMask.length !== n)
  )
    throw new RangeError(`adamwStep: ${n} parameters, ${grad.length} gradients, ${state.m.length} moments`);
  const norm = gradNorm(grad);
  if (!Number.isFinite(norm)) throw new RangeError(`adamwStep: the gradient norm is ${norm}`);
  if (options.gradClip > 0 && norm > options.gradClip) {
    // PyTorch's factor: clip / (norm + 1e-6).
    const f = options.gradClip / (norm + 1e-6);
    for (let i = 0; i < n; i++) grad[i]! *= f;
  }
  const [b1, b2] = options.betas;
  state.step += 1;
  const c1 = 1 - b1 ** state.step;
  const c2 = 1 - b2 ** state.step;
  const { lr, eps, weightDecay } = options;
  const { m, v } = state;
  for (let i = 0; i < n; i++) {
    const g = grad[i]!;
    const mi = b1 * m[i]! + (1 - b1) * g;
    const vi = b2 * v[i]! + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let w = params[i]!;
    if (weightDecay !== 0 && (decayMask === undefined || decayMask[i] === 1)) w -= lr * weightDecay * w;
    params[i] = w - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
  }
  return norm;
}
