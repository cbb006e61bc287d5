// The `specloop` command tree. Each command lives in src/commands/; this file only wires them. Exit codes:
// exit-codes.ts (a command line commander refuses is EXIT.usage, through runProgram).
import { DRAFTER_KINDS } from "@specloop/speculation";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { action } from "./action.js";
import { remoteGenerate } from "./commands/generate.js";
import { checkHealth } from "./commands/health.js";
import { addModelCommands } from "./commands/model.js";
import { parseTokenList } from "./commands/model-common.js";
import { addSolveCommand } from "./commands/solve.js";
import { addStatusCommand } from "./commands/status.js";
import { addTracesCommands } from "./commands/traces.js";
import { addTrainerCommands } from "./commands/trainer.js";
import { addVerdictsCommands } from "./commands/verdicts.js";
import { addVersionsCommands } from "./commands/versions.js";
import { EXIT, type ExitCode } from "./exit-codes.js";
import type { Io } from "./io.js";
import { DEFAULT_INFERENCE_ADDRESS, positiveInt } from "./options.js";

export function buildProgram(io: Io): Command {
  const program = new Command()
    .name("specloop")
    .description(
      "Admin CLI for specloop: online speculative decoding with inference nodes, a trainer and a verifier",
    )
    .version("0.1.0")
    .showHelpAfterError()
    // Parse errors throw (runProgram turns them into EXIT.usage) instead of exiting with commander's 1.
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .addHelpText(
      "after",
      "\nExit codes: 0 ok, 1 failed (refused, unhealthy, stale), 2 usage, 3 unreachable, 4 auth, " +
        "5 not found, 6 not possible in the present state.",
    );

  addStatusCommand(program, io);
  addVersionsCommands(program, io);
  addTrainerCommands(program, io);
  addTracesCommands(program, io);

  program
    .command("generate")
    .description(
      "send one request to an inference node and stream its output (speculation chosen by the node)",
    )
    .addOption(
      new Option("--server <host:port>", "an inference node's gRPC address")
        .env("SPECLOOP_INFERENCE_ADDRESS")
        .default(DEFAULT_INFERENCE_ADDRESS),
    )
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
    .action(
      action(
        io,
        "generate",
        async (opts: Parameters<typeof remoteGenerate>[0] & { timeout: number; json?: boolean }) => {
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
        },
        (cmd) => (cmd.opts() as { server: string }).server,
      ),
    );

  program
    .command("health")
    .description("ask a service's gRPC health endpoint whether it is serving (exit 0 only when SERVING)")
    .addOption(
      new Option("--server <host:port>", "the service's gRPC address (by default the inference node's)")
        .env("SPECLOOP_INFERENCE_ADDRESS")
        .default(DEFAULT_INFERENCE_ADDRESS),
    )
    .option("--service <name>", "service name to check; empty means the whole server", "")
    .addOption(new Option("--timeout <ms>", "deadline in milliseconds").argParser(positiveInt).default(5000))
    .option("--json", "print the answer as JSON")
    .action(
      action(
        io,
        "health",
        async (opts: { server: string; service: string; timeout: number; json?: boolean }) => {
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
          return result.status === "SERVING" ? EXIT.ok : EXIT.failed;
        },
        (cmd) => (cmd.opts() as { server: string }).server,
      ),
    );

  addSolveCommand(program, io);
  addModelCommands(program, io);
  addVerdictsCommands(program, io);
  return program;
}

/** Parses and runs argv (process.argv shape); resolves with the exit code. */
export async function runProgram(io: Io, argv: readonly string[]): Promise<ExitCode> {
  try {
    await buildProgram(io).parseAsync([...argv]);
  } catch (err) {
    // commander already printed what was wrong (and the help); --help and --version end here with 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    throw err;
  }
  return (process.exitCode ?? EXIT.ok) as ExitCode;
}
