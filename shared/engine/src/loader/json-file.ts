// JSON files of a model directory (config.json, tokenizer_config.json, ...): errors name the path.
import { readFile } from "node:fs/promises";
import { ModelFileError } from "../errors.js";

export type Json = Record<string, unknown>;

/** Reads a JSON object file; a missing file is an error when `required`, else undefined. */
export async function readJsonFile(path: string, required: true): Promise<Json>;
export async function readJsonFile(path: string, required: boolean): Promise<Json | undefined>;
export async function readJsonFile(path: string, required: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      if (!required) return undefined;
      throw new ModelFileError(path, "missing", { cause: err });
    }
    throw new ModelFileError(path, `cannot read: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ModelFileError(path, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ModelFileError(path, "not a JSON object");
  }
  return value as Json;
}
