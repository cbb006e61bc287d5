import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  firstNonFiniteElement,
  hostTensor,
} from "./tensor.js";

const isNaNHalf = (bits: number) => (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;

test("tensor - every f16 value survives f16 -> f32 -> f16 exactly (NaNs stay NaN)", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const back = f32ToF16Bits(f16ToF32(bits));
    if (isNaNHalf(bits)) assert.ok(isNaNHalf(back), `0x${bits.toString(16)} -> 0x${back.toString(16)}`);
    else assert.equal(back, bits, `0x${bits.toString(16)}`);
  }
});

test("tensor - f32ToF16Bits rounds to nearest even, keeps subnormals, overflows to infinity", () => {
  // 1 + 2^-11 lies halfway between 1 and the next half (1 + 2^-10): ties go to the even mantissa, 1.
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01);
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001); // the smallest subnormal
  assert.equal(f32ToF16Bits(2 ** -26), 0x0000); // below half of it
  assert.equal(f32ToF16Bits(-(2 ** -14)), 0x8400); // the smallest normal, negative
  assert.equal(f32ToF16Bits(65504), 0x7bff); // the largest finite half
  assert.equal(f32ToF16Bits(65520), 0x7c00); // rounds up past it
  assert.equal(f32ToF16Bits(Number.NEGATIVE_INFINITY), 0xfc00);
  assert.ok(isNaNHalf(f32ToF16Bits(Number.NaN)));
  assert.equal(f32ToF16Bits(-0), 0x8000);
});

test("tensor - f32ToBf16Bits keeps every bf16 value, rounds to nearest even, keeps NaN a NaN", () => {
  for (let bits = 0; bits < 0x10000; bits++) {
    const back = f32ToBf16Bits(bf16ToF32(bits));
    if (Number.isNaN(bf16ToF32(bits))) assert.ok(Number.isNaN(bf16ToF32(back)), `0x${bits.toString(16)}`);
    else assert.equal(back, bits, `0x${bits.toString(16)}`);
  }
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80); // halfway: to the even mantissa (1)
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // halfway: to the even mantissa (1 + 2^-6)
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  // A NaN whose payload sits only in the low bits: rounding must not turn it into an infinity.
  const nan = new Float32Array(new Uint32Array([0x7f800001]).buffer)[0] as number;
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16Bits(nan))));
});

test("tensor - firstNonFiniteElement finds the first NaN or infinity in each dtype, at any byte offset", () => {
  const values = Float32Array.of(1, -0, 65504, 2 ** -24, Number.NaN, Number.POSITIVE_INFINITY);
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    const t = hostTensor([values.length], values, dtype);
    assert.equal(firstNonFiniteElement(t), 4, dtype);
    // The same bytes one byte into a larger buffer: safetensors does not align a tensor's data.
    const shifted = new Uint8Array(t.data.byteLength + 1);
    shifted.set(t.data, 1);
    assert.equal(firstNonFiniteElement({ ...t, data: shifted.subarray(1) }), 4, `${dtype} unaligned`);
    assert.equal(firstNonFiniteElement(hostTensor([4], values.subarray(0, 4), dtype)), -1, `${dtype} finite`);
    const inf = hostTensor([2], Float32Array.of(0, Number.NEGATIVE_INFINITY), dtype);
    assert.equal(firstNonFiniteElement(inf), 1, `${dtype} -inf`);
  }
});
