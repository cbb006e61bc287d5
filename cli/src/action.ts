// How every command ends: what it returns is the exit code (ok when nothing), and whatever it throws is one
// line on stderr, "specloop <command>: <why>", with the exit code describeFailure gives it.
import type { Command } from "commander";
import { describeFailure, EXIT, type ExitCode } from "./exit-codes.js";
import type { Io } from "./io.js";
import type { GrpcTargetOptions } from "./options.js";

/** Reports a failure and sets the process's exit code. */
export function fail(io: Io, name: string, err: unknown, server?: string, opts?: GrpcTargetOptions): void {
  const { code, message } = describeFailure(err, server);
  const hint =
    code === EXIT.auth &&
    server !== undefined &&
    opts !== undefined &&
    opts.token === undefined &&
    opts.tokenFile === undefined
      ? " (this needs the admin token: --token-file FILE or SPECLOOP_ADMIN_TOKEN)"
      : "";
  io.err(`specloop ${name}: ${message}${hint}`);
  process.exitCode = code;
}

/**
 * A commander action from `fn`, which receives the command's arguments and its options (as commander
 * gives them) and returns the exit code; `server` says which address a gRPC failure names.
 */
export function action<A extends unknown[]>(
  io: Io,
  name: string,
  // biome-ignore lint/suspicious/noConfusingVoidType: an action that only prints is an async function returning void
  fn: (...args: A) => Promise<ExitCode | undefined | void>,
  server?: (cmd: Command) => string | undefined,
): (...args: [...A, Command]) => Promise<void> {
  return async (...args) => {
    const cmd = args[args.length - 1] as Command;
    try {
      const code = await fn(...(args.slice(0, -1) as A));
      if (code !== undefined) process.exitCode = code;
    } catch (err) {
      fail(io, name, err, server?.(cmd), cmd.opts() as GrpcTargetOptions);
    }
  };
}
