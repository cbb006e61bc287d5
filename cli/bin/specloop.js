#!/usr/bin/env node
// The `specloop` command as npm links it (package.json "bin"). npm links a workspace's bins when it
// installs, before anything is built, so the bin must be a file that exists in a fresh clone: this
// launcher, which runs the compiled CLI (dist/main.js) and, when the build has not run yet, says how to
// build instead of failing with "could not determine executable to run".
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(
    "specloop: the CLI is not built yet (cli/dist/main.js is missing).\n" +
      "Build the workspace first, from the repository root: npm run build  (bash scripts/setup.sh does it too)\n",
  );
  process.exit(1);
}
await import(main.href);
