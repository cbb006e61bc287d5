import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TempDir {
  readonly path: string;
  /** Removes the directory and everything in it; safe to call twice. */
  dispose(): void;
}

/** A fresh directory under the OS temp dir, named `<prefix>-` plus six random characters. */
export function tempDir(prefix: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return {
    path,
    dispose() {
      rmSync(path, { recursive: true, force: true });
    },
  };
}
