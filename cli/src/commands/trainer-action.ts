// A trainer command's action: a TrainerApi on the command's --trainer options, closed afterwards; gRPC
// failures name the trainer's address.
import type { Command } from "commander";
import { action } from "../action.js";
import type { ExitCode } from "../exit-codes.js";
import type { Io } from "../io.js";
import type { TrainerOptions } from "../options.js";
import { TrainerApi } from "../trainer-client.js";

export function withTrainer<A extends unknown[]>(
  io: Io,
  name: string,
  // biome-ignore lint/suspicious/noConfusingVoidType: an action that only prints is an async function returning void
  fn: (api: TrainerApi, ...args: A) => Promise<ExitCode | undefined | void>,
): (...args: [...A, Command]) => Promise<void> {
  return action<A>(
    io,
    name,
    async (...args: A) => {
      const opts = args[args.length - 1] as TrainerOptions;
      const api = new TrainerApi(opts);
      try {
        return await fn(api, ...args);
      } finally {
        api.close();
      }
    },
    (cmd) => (cmd.opts() as TrainerOptions).trainer,
  );
}
