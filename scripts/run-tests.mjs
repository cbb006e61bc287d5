#!/usr/bin/env node
// Runs the test suite with node's built-in runner over the TypeScript sources (through tsx, with the
// "source" export condition so workspace packages resolve to src/ rather than dist/).
//   node scripts/run-tests.mjs              unit tests (beside the code) then integration tests
//   node scripts/run-tests.mjs --unit       unit tests only
//   node scripts/run-tests.mjs --integration
//   node scripts/run-tests.mjs FILE...      the given test files
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const UNIT_ROOTS = ["shared", "services", "cli", "bench", "tools"];
const INTEGRATION_ROOTS = ["integration-tests"];
const SKIP = new Set(["node_modules", "dist", ".gpu", ".git", "models"]);

function findTests(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (SKIP.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) findTests(path, out);
    else if (name.endsWith(".test.ts")) out.push(relative(root, path));
  }
  return out;
}

const args = process.argv.slice(2);
const explicit = args.filter((a) => !a.startsWith("--"));
const onlyUnit = args.includes("--unit");
const onlyIntegration = args.includes("--integration");

const suites = [];
if (explicit.length > 0) suites.push({ name: "selected", files: explicit });
else {
  if (!onlyIntegration)
    suites.push({ name: "unit", files: UNIT_ROOTS.flatMap((d) => findTests(join(root, d), [])).sort() });
  if (!onlyUnit)
    suites.push({
      name: "integration",
      files: INTEGRATION_ROOTS.flatMap((d) => findTests(join(root, d), [])).sort(),
    });
}

const concurrency = Math.max(1, Math.min(4, availableParallelism()));
let failed = false;
for (const suite of suites) {
  if (suite.files.length === 0) continue;
  console.log(`\n# ${suite.name}: ${suite.files.length} test files`);
  const result = spawnSync(
    process.execPath,
    [
      "--conditions=source",
      "--import",
      "tsx",
      "--test",
      `--test-concurrency=${concurrency}`,
      "--test-reporter=spec",
      ...suite.files,
    ],
    { cwd: root, stdio: "inherit", env: { ...process.env, NODE_ENV: "test" } },
  );
  if (result.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
