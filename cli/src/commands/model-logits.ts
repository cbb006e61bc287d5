// `specloop model logits --model DIR --tokens 1,2,3`: one forward pass over the tokens; the top 8
// [id, logit] pairs at every position and the full logits of the last one (for parity checks by hand).
import { type BackendChoice, buildLayout, KvManager, topKIds } from "@specloop/engine";
import { type BackendFields, backendFields, checkTokenIds, loadOnBackend } from "./model-common.js";

export const LOGITS_TOP_K = 8;

export interface ModelLogitsOptions {
  model: string;
  tokens: number[];
  backend: BackendChoice;
}

export interface ModelLogitsResult extends BackendFields {
  model: string;
  tokens: number[];
  /** Per position, the top 8 [id, logit] pairs, largest first (lowest id first on ties). */
  topk: [number, number][][];
  last_logits: number[];
}

export async function modelLogits(opts: ModelLogitsOptions): Promise<ModelLogitsResult> {
  const { loaded, model, selected } = await loadOnBackend(opts.model, opts.backend);
  try {
    const n = opts.tokens.length;
    checkTokenIds(opts.tokens, loaded.config.vocabSize);
    const kv = new KvManager(model.backend, model.kvSpec(Math.ceil(n / 16), 16));
    kv.allocateSlots("0", n);
    const layout = buildLayout(kv, [{ seq: "0", newTokens: n }]);
    const out = model.forward(kv.storage, layout, Int32Array.from(opts.tokens), {
      logitRows: Int32Array.from(opts.tokens, (_, i) => i),
    });
    const logits = await model.backend.readRows(out.logits!);
    const vocab = loaded.config.vocabSize;
    const rows = Array.from({ length: n }, (_, p) => logits.subarray(p * vocab, (p + 1) * vocab));
    return {
      model: loaded.modelId,
      ...backendFields(selected),
      tokens: opts.tokens,
      topk: rows.map((r) => topKIds(r, LOGITS_TOP_K).map((id): [number, number] => [id, r[id]!])),
      last_logits: Array.from(rows[n - 1]!),
    };
  } finally {
    selected.backend.destroy();
  }
}
