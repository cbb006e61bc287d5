#!/usr/bin/env node
// The CLI's entry (bin/specloop.js runs the compiled one). Exit codes: exit-codes.ts.
import { runProgram } from "./program.js";

process.exitCode = await runProgram(
  {
    out: (s) => console.log(s),
    err: (s) => console.error(s),
    write: (s) => process.stdout.write(s),
  },
  process.argv,
);
