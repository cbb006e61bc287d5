#!/usr/bin/env node
import { buildProgram } from "./program.js";

const program = buildProgram({
  out: (s) => console.log(s),
  err: (s) => console.error(s),
  write: (s) => process.stdout.write(s),
});
await program.parseAsync(process.argv);
