// The engine's tokenizer: Hugging Face tokenizer.json through @huggingface/tokenizers (the JS port of
// the Rust library, which reproduces its ids), plus the special token ids the engine stops and pads on,
// and an incremental detokenizer for streaming.
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { ModelFileError } from "../errors.js";
import { type Json, readJsonFile } from "../loader/json-file.js";
import { StreamDecoder } from "./stream-decoder.js";

export interface EncodeOptions {
  /** Apply the tokenizer's post-processor (e.g. a BOS token); default true, as in Hugging Face. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (EOS, pad, ...) from the text; default false, as in Hugging Face. */
  skipSpecialTokens?: boolean;
}

/** Special ids from config.json / generation_config.json, which win over tokenizer_config.json's. */
export interface SpecialTokenOverrides {
  bosTokenId?: number | undefined;
  eosTokenIds?: readonly number[];
  padTokenId?: number | undefined;
}

/** tokenizer_config.json names a token either as a string or as an AddedToken object. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "object" && v !== null && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return undefined;
}

export class Tokenizer {
  /** One past the largest token id; may be below the model's vocab_size (padded embeddings). */
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  /** Every id that ends generation (config's eos list and the tokenizer's eos_token). */
  readonly eosTokenIds: readonly number[];
  readonly padTokenId: number | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly #hf: HfTokenizer;

  constructor(tokenizerJson: Json, tokenizerConfig: Json = {}, overrides: SpecialTokenOverrides = {}) {
    this.#hf = new HfTokenizer(tokenizerJson, tokenizerConfig);
    let maxId = -1;
    for (const id of this.#hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const idOf = (key: string): number | undefined => {
      const content = tokenContent(tokenizerConfig[key]);
      return content === undefined ? undefined : this.#hf.token_to_id(content);
    };
    this.bosTokenId = overrides.bosTokenId ?? idOf("bos_token");
    const eos = new Set(overrides.eosTokenIds ?? []);
    const tokEos = idOf("eos_token");
    if (tokEos !== undefined) eos.add(tokEos);
    this.eosTokenIds = [...eos];
    this.padTokenId = overrides.padTokenId ?? idOf("pad_token");
    this.bosToken = this.bosTokenId === undefined ? undefined : this.#hf.id_to_token(this.bosTokenId);
    const firstEos = this.eosTokenIds[0];
    this.eosToken = firstEos === undefined ? undefined : this.#hf.id_to_token(firstEos);
  }

  /**
   * Loads tokenizer.json (required) and tokenizer_config.json (optional: path undefined or missing file).
   * Errors name the file.
   */
  static async fromFiles(
    tokenizerJsonPath: string,
    tokenizerConfigPath?: string,
    overrides?: SpecialTokenOverrides,
  ): Promise<Tokenizer> {
    const json = await readJsonFile(tokenizerJsonPath, true);
    const config = tokenizerConfigPath === undefined ? {} : await readJsonFile(tokenizerConfigPath, false);
    try {
      return new Tokenizer(json ?? {}, config ?? {}, overrides);
    } catch (err) {
      if (err instanceof ModelFileError) throw err;
      throw new ModelFileError(tokenizerJsonPath, `cannot build the tokenizer: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /**
   * A prompt's ids as the checkpoint saw text in training: bos first when the model has one and the
   * tokenizer's own post-processing did not add it.
   */
  encodePrompt(text: string): number[] {
    const ids = this.encode(text);
    const bos = this.bosTokenId;
    return bos !== undefined && ids[0] !== bos ? [bos, ...ids] : ids;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    return [...this.#hf.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids];
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    // The library refuses an empty list; nothing decodes to nothing (the stream decoder relies on it).
    if (ids.length === 0) return "";
    return this.#hf.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }

  isEos(id: number): boolean {
    return this.eosTokenIds.includes(id);
  }

  /** A detokenizer for one generated sequence: push ids as they come, get only complete text back. */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder((ids) => this.decode(ids, options));
  }
}
