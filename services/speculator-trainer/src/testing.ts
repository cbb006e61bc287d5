// For the trainer's own tests: the bundled model on the cpu backend (one kernel thread: test files run two at
// a time on CI's 2 cores) and traces of its own greedy outputs for bundled python prompts, shaped as the
// intake hands them to the loop.
import { fileURLToPath } from "node:url";
import {
  type Backend,
  bundledPromptTokens,
  GREEDY,
  generate,
  type LoadedModel,
  loadModelDir,
  Model,
  selectBackend,
} from "@specloop/engine";
import { Trace } from "@specloop/proto";

export const TEST_MODEL_DIR = fileURLToPath(new URL("../../../models/tiny-code", import.meta.url));

export interface TestTarget {
  backend: Backend;
  loaded: LoadedModel;
  target: Model;
}

export async function loadTestTarget(): Promise<TestTarget> {
  const backend = (await selectBackend("cpu", { cpu: { threads: 1 } })).backend;
  const loaded = await loadModelDir(TEST_MODEL_DIR);
  return { backend, loaded, target: Model.load(backend, loaded) };
}

/** `count` traces: the first bundled python prompts (32 tokens at most) and the target's 24 greedy tokens. */
export async function pythonTraces(t: TestTarget, count: number): Promise<Trace[]> {
  const prompts = (
    await bundledPromptTokens(TEST_MODEL_DIR, t.loaded.tokenizer, { perDomain: count, maxTokens: 32 })
  ).slice(0, count);
  const { outputs } = await generate(
    t.target,
    prompts.map((prompt) => ({ prompt, maxTokens: 24, stopTokenIds: [], sampling: GREEDY })),
  );
  return prompts.map((prompt, i) =>
    Trace.fromPartial({
      requestId: `t${i}`,
      domain: "python",
      promptTokenIds: prompt,
      outputTokenIds: outputs[i]?.tokens,
    }),
  );
}
