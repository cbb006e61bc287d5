// A reduced draft vocabulary (EAGLE-3): the N target tokens seen most often in traffic, so a head for a
// large-vocabulary target pays N lm_head rows per drafted token instead of the whole vocabulary. It is a
// d2t map, draft id i -> target id d2t[i] (absolute ids, most frequent first). In a blob it travels as
// the metadata key `draft_vocab`, the ids comma-separated, beside the head's config keys.
// validateSpeculatorBlob checks it and EagleHead serves it (eagle/head.ts: the lm_head's other rows get a
// bias of -1e30, so the head never proposes a token it was not trained on).
import { InvalidArgumentError } from "@specloop/errors";
import { SpeculatorBlobError } from "../errors.js";

/** The blob metadata key holding the d2t map. */
export const DRAFT_VOCAB_KEY = "draft_vocab";

/**
 * The `size` most frequent tokens of `sequences` (ties: the lower id first), most frequent first. Tokens
 * never seen do not appear, so the result may be shorter than `size`.
 */
export function buildDraftVocab(
  sequences: Iterable<ArrayLike<number>>,
  size: number,
  vocabSize: number,
): Int32Array {
  if (!(Number.isInteger(size) && size >= 1))
    throw new InvalidArgumentError("size", `${size} is not a positive integer`);
  const counts = new Float64Array(vocabSize);
  for (const seq of sequences) {
    for (let i = 0; i < seq.length; i++) {
      const t = seq[i]!;
      if (!(t >= 0 && t < vocabSize))
        throw new InvalidArgumentError("sequences", `token ${t} outside [0, ${vocabSize})`);
      counts[t]! += 1;
    }
  }
  const ids = Array.from({ length: vocabSize }, (_, i) => i).filter((i) => counts[i]! > 0);
  ids.sort((a, b) => counts[b]! - counts[a]! || a - b);
  return Int32Array.from(ids.slice(0, size));
}

/** The d2t map as its metadata value. */
export function draftVocabMetadata(d2t: Int32Array): string {
  return Array.from(d2t).join(",");
}

/**
 * The d2t map of a blob's metadata (undefined: the whole vocabulary); checks every id, each refusal a
 * SpeculatorBlobError naming the key (validateSpeculatorBlob refuses a blob whose map is malformed).
 */
export function parseDraftVocab(
  meta: Readonly<Record<string, string>>,
  vocabSize: number,
): Int32Array | undefined {
  const s = meta[DRAFT_VOCAB_KEY];
  if (s === undefined) return undefined;
  const parts = s.split(",");
  const ids = new Int32Array(parts.length);
  const seen = new Set<number>();
  parts.forEach((p, i) => {
    // The number itself is checked, not its Int32Array wrap (4294967296 would wrap to 0).
    const id = Number(p.trim());
    if (!/^\d+$/.test(p.trim()) || !(id < vocabSize))
      throw new SpeculatorBlobError(
        DRAFT_VOCAB_KEY,
        `entry ${i} (${JSON.stringify(p)}) is not a token id in [0, ${vocabSize})`,
      );
    if (seen.has(id)) throw new SpeculatorBlobError(DRAFT_VOCAB_KEY, `token ${id} listed twice`);
    seen.add(id);
    ids[i] = id;
  });
  return ids;
}
