// The `specloop` command tree. Each command lives in src/commands/; this file only wires them.
import { DRAFTER_KINDS } from "@specloop/speculation";
import { Command, InvalidArgumentError, Option } from "commander";
import { remoteGenerate } from "./commands/generate.js";
import { checkHealth, describeHealthError } from "./commands/health.js";
import { addModelCommands } from "./commands/model.js";
import { parseTokenList } from "./commands/model-common.js";
import { addVerdictsCommands } from "./commands/verdicts.js";
import type { Io } from "./io.js";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

export function buildProgram(io: Io): Command {
  const program = new Command()
    .name("specloop")
    .description(
      "Admin CLI for specloop: online speculative decoding with inference nodes, a trainer and a verifier",
    )
    .version("0.1.0")
    .showHelpAfterError()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });

  program
    .command("generate")
    .description(
      "send one request to an inference node and stream its output (speculation chosen by the node)",
    )
    .requiredOption("--server <addr>", "host:port of an inference node")
    .option("--prompt <text>", "prompt text")
    .addOption(new Option("--tokens <ids>", "prompt token ids, comma-separated").argParser(parseTokenList))
    .addOption(
      new Option("--max-tokens <n>", "tokens to generate at most").argParser(positiveInt).default(64),
    )
    .addOption(
      new Option("--temperature <t>", "0 = greedy")
        .argParser((v) => {
          const n = Number(v);
          if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
          return n;
        })
        .default(0),
    )
    .addOption(new Option("--seed <n>", "sampling seed").argParser(positiveInt))
    .addOption(
      new Option("--drafter <kind>", "drafter to ask for")
        .choices(["auto", ...DRAFTER_KINDS])
        .default("auto"),
    )
    .option("--domain <tag>", "domain tag for the node's acceptance stats and traces", "")
    .addOption(
      new Option("--timeout <ms>", "deadline in milliseconds").argParser(positiveInt).default(120_000),
    )
    .option("--json", "print the whole answer as JSON when done")
    .action(async (opts: Parameters<typeof remoteGenerate>[0] & { timeout: number; json?: boolean }) => {
      try {
        const r = await remoteGenerate({ ...opts, timeoutMs: opts.timeout }, (t) => {
          if (!opts.json) io.write(t);
        });
        if (opts.json) io.out(JSON.stringify(r));
        else {
          const s = r.stats;
          io.out(
            `\n[${r.output_ids.length} tokens, ${r.finish_reason}; ${s?.targetPasses ?? 0} target passes, ` +
              `${(s?.acceptedPerPass ?? 0).toFixed(2)} tokens per pass (${s?.drafter.replace("DRAFTER_", "").toLowerCase()})]`,
          );
        }
      } catch (err) {
        io.err(`specloop generate: ${describeHealthError(err, opts.server)}`);
        process.exitCode = 1;
      }
    });

  program
    .command("health")
    .description("ask a service's gRPC health endpoint whether it is serving (exit 0 only when SERVING)")
    .requiredOption("--server <addr>", "host:port of the service")
    .option("--service <name>", "service name to check; empty means the whole server", "")
    .addOption(new Option("--timeout <ms>", "deadline in milliseconds").argParser(positiveInt).default(5000))
    .option("--json", "print the answer as JSON")
    .action(async (opts: { server: string; service: string; timeout: number; json?: boolean }) => {
      try {
        const result = await checkHealth({
          server: opts.server,
          service: opts.service,
          timeoutMs: opts.timeout,
        });
        io.out(
          opts.json
            ? JSON.stringify(result)
            : `${result.server} ${result.service || "(server)"}: ${result.status}`,
        );
        if (result.status !== "SERVING") process.exitCode = 1;
      } catch (err) {
        io.err(`specloop health: ${describeHealthError(err, opts.server)}`);
        process.exitCode = 1;
      }
    });

  addModelCommands(program, io);
  addVerdictsCommands(program, io);
  return program;
}
