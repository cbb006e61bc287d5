// Elementwise ops of the decoder layer: the SiLU gate of the MLP, silu(g) * u with silu(g) = g sigma(g),
// and the residual add. Gradients: d silu(g)/dg = sigma(g) (1 + g (1 - sigma(g))); an add passes its
// gradient to both inputs unchanged (addInto is how the callers accumulate it).

export function siluGateForward(gate: Float32Array, up: Float32Array): Float32Array {
  if (gate.length !== up.length) throw new RangeError(`siluGate: ${gate.length} gates, ${up.length} ups`);
  const out = new Float32Array(gate.length);
  for (let i = 0; i < out.length; i++) {
    const g = gate[i]!;
    out[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
  return out;
}

export function siluGateBackward(
  dOut: Float32Array,
  gate: Float32Array,
  up: Float32Array,
): { dGate: Float32Array; dUp: Float32Array } {
  if (dOut.length !== gate.length || gate.length !== up.length)
    throw new RangeError(`siluGateBackward: ${dOut.length}, ${gate.length}, ${up.length} values`);
  const dGate = new Float32Array(gate.length);
  const dUp = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    const s = 1 / (1 + Math.exp(-g));
    dUp[i] = dOut[i]! * g * s;
    dGate[i] = dOut[i]! * up[i]! * s * (1 + g * (1 - s));
  }
  return { dGate, dUp };
}

/** a + b, a new array. */
export function addForward(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length !== b.length) throw new RangeError(`add: ${a.length} and ${b.length} values`);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

/** into += x (gradient accumulation; also the add's backward, once per input). */
export function addInto(into: Float32Array, x: Float32Array): Float32Array {
  if (into.length !== x.length) throw new RangeError(`addInto: ${into.length} and ${x.length} values`);
  for (let i = 0; i < x.length; i++) into[i]! += x[i]!;
  return into;
}
