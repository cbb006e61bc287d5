// The cpu backend's interface between the host and the WebAssembly kernels: job modes, the job's argument
// slots, dtype codes, the chunk claim word and the top-k record layout. ONE source compiled into both sides:
// tsc compiles it for the host (pool.ts, worker.ts, wasm.ts, backend.ts) and asc compiles it into the
// kernels, whose job dispatcher (assembly/jobs.ts) and top-k (assembly/topk.ts) import it as AssemblyScript.
// So it holds only `export const` of integer literals and sums of them, valid in both languages: asc types
// them i32 and inlines them as constants, so the kernels compile to the same code as with literals.
//
// A job's arguments are i32 slots at byte offset `args` (control.ts: ARGS slots into the control block):
//   JOB_MODE, JOB_X (pointer), JOB_N (rows of x), JOB_K (columns of x), JOB_DTYPE (the weights'), JOB_CHUNKS
//   (how many chunks the job is cut into), JOB_SEGMENTS (how many), JOB_AUX (the mode's extra pointer), then
//   JOB_SEGMENT slots per segment s from JOB_FIXED + s * JOB_SEGMENT: SEG_W, SEG_BIAS, SEG_OUT, SEG_M, SEG_AUX.
// TOPK and ATTENTION are not products and lay out their own slots (TOPK_*, ATT_* below).

/** y = x W^T (+ bias): the segments are independent products of the same x, laid end to end (q, k, v). */
export const MODE_LINEAR = 0;
/** Segment 0 is gate (out: a scratch), segment 1 is up (out: the result): silu(gate) * up. */
export const MODE_SILU_MUL = 1;
/** One segment; SEG_AUX is the residual [n, m]: out = residual + product (+ bias). */
export const MODE_ADD = 2;
/** Softmax + top-k partials of x [n, k] over column chunks (assembly/topk.ts). */
export const MODE_TOPK = 3;
/** Attention of x (q) [n rows] over the KV cache, the (row, head) pairs cut into chunks (assembly/attention.ts). */
export const MODE_ATTENTION = 4;

export const JOB_MODE = 0;
export const JOB_X = 1;
export const JOB_N = 2;
export const JOB_K = 3;
export const JOB_DTYPE = 4;
/** The number of chunks the job's work is cut into; job() claims them one at a time. */
export const JOB_CHUNKS = 5;
export const JOB_SEGMENTS = 6;
/** Products: xv, x interleaved for 2-byte weights; MODE_TOPK: the records. */
export const JOB_AUX = 7;
/** Fixed slots before the first segment. */
export const JOB_FIXED = 8;
/** Slots per segment. */
export const JOB_SEGMENT = 5;
export const MAX_SEGMENTS = 3;
/** Every slot a job may use: the fixed ones and MAX_SEGMENTS segments (ATTENTION's fit within them). */
export const JOB_SLOTS = JOB_FIXED + MAX_SEGMENTS * JOB_SEGMENT;

export const SEG_W = 0;
export const SEG_BIAS = 1;
export const SEG_OUT = 2;
export const SEG_M = 3;
export const SEG_AUX = 4;

/** MODE_TOPK: values kept per row (in JOB_DTYPE's slot); x, rows and columns as a product's, records at JOB_AUX. */
export const TOPK_K = 4;
/** A top-k record: m f32 at 0, count i32 at 4, s f64 at 8, then `k` pairs (value f32, id i32) from here. */
export const TOPK_RECORD_HEADER = 16;
export const TOPK_PAIR_BYTES = 8;

// MODE_ATTENTION: q at JOB_X, rows at JOB_N, chunks at JOB_CHUNKS, then these.
export const ATT_HEADS = 3;
/** Query heads per KV head (GQA). */
export const ATT_GROUP = 4;
export const ATT_HEAD_DIM = 6;
/** Scores scratch, one region per chunk. */
export const ATT_SCORES = 7;
export const ATT_K = 8;
export const ATT_V = 9;
export const ATT_SLOTS = 10;
export const ATT_OFFSETS = 11;
export const ATT_OUT = 12;
/** f32 per KV cache slot. */
export const ATT_WIDTH = 13;
/** The f32 scale, as its bits. */
export const ATT_SCALE = 14;
/** The most slots any row sees. */
export const ATT_LONGEST = 15;

/** The weights' dtype codes (wasm.ts maps tensor dtypes to them). */
export const DTYPE_F32 = 0;
export const DTYPE_F16 = 1;
export const DTYPE_BF16 = 2;

/**
 * The claim word: the job's tag in the high 16 bits, its next unclaimed chunk in the low 16 (CHUNK_MASK); a
 * chunk count a job never reaches (NO_CHUNK) while no chunk may be claimed.
 */
export const TAG_SHIFT = 16;
export const CHUNK_MASK = 0xffff;
export const NO_CHUNK = CHUNK_MASK;
