// Incremental detokenization for streaming. Byte-level BPE splits a multi-byte character across tokens,
// so decoding each new token alone would emit U+FFFD halves; and decoders that depend on context (a
// Metaspace decoder drops the first word's leading space) make a token's text differ with what precedes
// it. The decoder therefore re-decodes a small window: `prefix` holds the tokens already emitted as text
// (kept as left context), and the delta is the window's text past the prefix's text. Text ending in an
// incomplete character (decoded as U+FFFD) is held back until the bytes that complete it arrive; the
// same technique as Hugging Face text-generation-inference and vLLM.
const REPLACEMENT = "\uFFFD";

export class StreamDecoder {
  readonly #decode: (ids: readonly number[]) => string;
  /** Tokens from the start of the window; [0, #prefixEnd) were emitted before the last emission. */
  #window: number[] = [];
  #prefixEnd = 0;
  #prefixText = "";

  constructor(decode: (ids: readonly number[]) => string) {
    this.#decode = decode;
  }

  /** Adds generated ids; returns the text they complete (possibly empty while a character is split). */
  push(ids: number | readonly number[]): string {
    if (typeof ids === "number") this.#window.push(ids);
    else this.#window.push(...ids);
    const text = this.#decode(this.#window);
    if (text.length <= this.#prefixText.length || text.endsWith(REPLACEMENT)) return "";
    return this.#emit(text);
  }

  /** Ends the sequence: returns whatever was held back (an incomplete character decodes as U+FFFD). */
  flush(): string {
    const text = this.#decode(this.#window);
    if (text.length <= this.#prefixText.length) return "";
    return this.#emit(text);
  }

  #emit(text: string): string {
    const delta = text.slice(this.#prefixText.length);
    // The tokens emitted so far become the left context of the next window; older ones are dropped.
    this.#window = this.#window.slice(this.#prefixEnd);
    this.#prefixEnd = this.#window.length;
    this.#prefixText = this.#decode(this.#window);
    return delta;
  }
}
