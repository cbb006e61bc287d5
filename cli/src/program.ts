// The `specloop` command tree. Each command lives in src/commands/; this file only wires them.
import { Command, InvalidArgumentError, Option } from "commander";
import { checkHealth, describeHealthError } from "./commands/health.js";
import { addModelCommands } from "./commands/model.js";
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
  return program;
}
