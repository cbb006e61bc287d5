// A process that runs one candidate in a sandbox and prints the result as JSON: what the sandbox tests
// start as a child, to kill it mid-run or to hand it a descriptor without close-on-exec.
//   node --import tsx run-one.ts <language> <time limit ms>   (the code on stdin)
import { readFileSync } from "node:fs";
import type { SandboxLanguage } from "../index.js";
import { testSandbox } from "../test-support.js";

const [language = "python", timeLimit = "5000"] = process.argv.slice(2);
const code = readFileSync(0, "utf8");
const result = await testSandbox().run({
  language: language as SandboxLanguage,
  code,
  stdin: "",
  timeLimitMs: Number(timeLimit),
  memoryLimitMb: 128,
});
process.stdout.write(`${JSON.stringify(result)}\n`);
