// Embedding lookup: rows of a [vocab, cols] table. The eagle head reads the target's table frozen (no
// gradient is formed for it); the scatter-add backward is here for completeness and is gradient-checked.

export function embeddingForward(table: Float32Array, cols: number, ids: Int32Array): Float32Array {
  const n = table.length / cols;
  const out = new Float32Array(ids.length * cols);
  ids.forEach((id, r) => {
    if (!(Number.isInteger(id) && id >= 0 && id < n))
      throw new RangeError(`embedding: id ${id} outside [0, ${n})`);
    out.set(table.subarray(id * cols, (id + 1) * cols), r * cols);
  });
  return out;
}

/** dTable[id] += dOut[r] for each row r reading id. */
export function embeddingBackward(
  dOut: Float32Array,
  cols: number,
  ids: Int32Array,
  dTable: Float32Array,
): void {
  if (dOut.length !== ids.length * cols) throw new RangeError(`embeddingBackward: ${dOut.length} values`);
  ids.forEach((id, r) => {
    for (let i = 0; i < cols; i++) dTable[id * cols + i]! += dOut[r * cols + i]!;
  });
}
