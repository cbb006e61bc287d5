// The prompt sets a bundled model ships with (models/<name>/prompts/<domain>.jsonl, one JSON object per
// line with id, domain and prompt text): the inputs of lossless tests, acceptance benchmarks and demos.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ModelFileError } from "../errors.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";

export interface BundledPrompt {
  id: string;
  domain: string;
  prompt: string;
}

/** Every prompt of the model directory's prompts/ folder, domains in name order, lines in file order. */
export async function loadBundledPrompts(modelDir: string): Promise<BundledPrompt[]> {
  const dir = join(modelDir, "prompts");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".jsonl")).sort();
  const out: BundledPrompt[] = [];
  for (const file of files) {
    const lines = (await readFile(join(dir, file), "utf8")).split("\n");
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (err) {
        throw new ModelFileError(join(dir, file), `line ${i + 1} is not JSON`, { cause: err });
      }
      const r = row as Partial<BundledPrompt>;
      if (typeof r.id !== "string" || typeof r.prompt !== "string" || typeof r.domain !== "string") {
        throw new ModelFileError(join(dir, file), `line ${i + 1} lacks a string id, domain or prompt`);
      }
      out.push({ id: r.id, domain: r.domain, prompt: r.prompt });
    });
  }
  return out;
}

/**
 * Token-id prompts from the bundled set: the first `perDomain` prompts of each domain, each cut to its
 * first `maxTokens` tokens (bos included where the tokenizer adds one).
 */
export async function bundledPromptTokens(
  modelDir: string,
  tokenizer: Tokenizer,
  options: { perDomain: number; maxTokens: number },
): Promise<number[][]> {
  const byDomain = new Map<string, number[][]>();
  for (const p of await loadBundledPrompts(modelDir)) {
    const list = byDomain.get(p.domain) ?? [];
    if (list.length < options.perDomain) list.push(tokenizer.encode(p.prompt).slice(0, options.maxTokens));
    byDomain.set(p.domain, list);
  }
  return [...byDomain.values()].flat();
}
