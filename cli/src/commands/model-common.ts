// What the `model` commands share: parsing --tokens, loading a model directory onto the chosen backend.
import {
  type BackendChoice,
  type BackendKind,
  type LoadedModel,
  loadModelDir,
  Model,
  type SelectedBackend,
  selectBackend,
} from "@specloop/engine";
import { InvalidArgumentError } from "commander";

/** "1,2,3" -> [1, 2, 3]; anything but non-negative integers is refused with the bad entry named. */
export function parseTokenList(value: string): number[] {
  const parts = value.split(",").map((s) => s.trim());
  const ids = parts.map(Number);
  const bad = parts.find((s, i) => s === "" || !Number.isInteger(ids[i]) || (ids[i] as number) < 0);
  if (bad !== undefined) {
    throw new InvalidArgumentError(
      `expected comma-separated token ids, got ${JSON.stringify(bad)} in "${value}"`,
    );
  }
  return ids;
}

export interface LoadedOnBackend {
  loaded: LoadedModel;
  model: Model;
  selected: SelectedBackend;
}

export async function loadOnBackend(dir: string, backend: BackendChoice): Promise<LoadedOnBackend> {
  const loaded = await loadModelDir(dir);
  const selected = await selectBackend(backend);
  return { loaded, selected, model: Model.load(selected.backend, loaded) };
}

/** Refuses ids the model has no embedding for (the error names the first). */
export function checkTokenIds(ids: readonly number[], vocabSize: number): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined)
    throw new RangeError(`token id ${bad} is outside the vocabulary (size ${vocabSize})`);
}

/** Which backend ran, in the commands' JSON: `backend_used` differs from what was asked when cpu falls back. */
export interface BackendFields {
  backend_requested: BackendChoice;
  backend_used: BackendKind;
  backend_notes: string[];
}

export function backendFields(s: SelectedBackend): BackendFields {
  return { backend_requested: s.requested, backend_used: s.used, backend_notes: s.notes };
}
