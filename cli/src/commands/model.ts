// `specloop model ...`: run a model in this process (no services): generate and logits.
import { BACKEND_CHOICES, type BackendChoice } from "@specloop/engine";
import { DRAFTER_KINDS } from "@specloop/speculation";
import { type Command, InvalidArgumentError, Option } from "commander";
import type { Io } from "../io.js";
import { parseTokenList } from "./model-common.js";
import { type ModelGenerateOptions, modelGenerate } from "./model-generate.js";
import { modelLogits } from "./model-logits.js";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer");
  return n;
}

function number(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
}

const backendOption = () =>
  new Option("--backend <kind>", "where to run: auto (a hardware GPU, else cpu), cpu, webgpu or reference")
    .choices(BACKEND_CHOICES)
    .default("auto");

/** Prints a failure as one line and sets the exit code (no stack trace for expected errors). */
function fail(io: Io, command: string, err: unknown): void {
  io.err(`specloop model ${command}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}

export function addModelCommands(program: Command, io: Io): void {
  const model = program.command("model").description("run a model in this process (Hugging Face directory)");

  model
    .command("generate")
    .description(
      "generate from a prompt, plain or with speculative decoding (same output); prints it and decode tokens/s",
    )
    .requiredOption("--model <dir>", "model directory (config.json, tokenizer.json, safetensors)")
    .option("--prompt <text>", "prompt text (bos is prepended)")
    .addOption(new Option("--tokens <ids>", "prompt token ids, comma-separated").argParser(parseTokenList))
    .addOption(
      new Option("--max-tokens <n>", "tokens to generate at most").argParser(positiveInt).default(32),
    )
    .addOption(new Option("--temperature <t>", "0 = greedy").argParser(number).default(0))
    .addOption(
      new Option("--top-k <k>", "sample among the k most likely tokens (0 = all)").argParser(nonNegativeInt),
    )
    .addOption(new Option("--top-p <p>", "sample within the top-p nucleus").argParser(number))
    .addOption(
      new Option("--seed <n>", "sampling seed (random and reported when absent)").argParser(nonNegativeInt),
    )
    .addOption(backendOption())
    .addOption(
      new Option("--drafter <kind>", "who proposes tokens for the model to verify (none: plain decoding)")
        .choices(DRAFTER_KINDS)
        .default("none"),
    )
    .option("--draft-model <dir>", "the draft model for --drafter draft-model (same tokenizer)")
    .option("--speculator <file>", "eagle-v1 safetensors weights for --drafter eagle")
    .addOption(
      new Option("--draft-budget <n>", "tokens drafted per target pass at most")
        .argParser(positiveInt)
        .default(6),
    )
    .option("--json", "print the answer as JSON")
    .action(async (opts: ModelGenerateOptions & { json?: boolean }) => {
      try {
        const r = await modelGenerate(opts);
        if (opts.json) io.out(JSON.stringify(r));
        else {
          io.out(r.text);
          io.out(
            `[${r.output_ids.length} tokens, ${r.finish_reason}; decode ${r.decode_tokens_per_second.toFixed(1)} ` +
              `tokens/s on ${r.backend_used}${r.backend_used === r.backend_requested ? "" : ` (asked: ${r.backend_requested})`}` +
              `${r.drafter === "none" ? "" : `; ${r.drafter}: ${r.accepted_per_pass.toFixed(2)} tokens per target pass`}]`,
          );
        }
      } catch (err) {
        fail(io, "generate", err);
      }
    });

  model
    .command("logits")
    .description("one forward pass: the top 8 [id, logit] at every position and the last position's logits")
    .requiredOption("--model <dir>", "model directory")
    .addOption(
      new Option("--tokens <ids>", "token ids, comma-separated")
        .argParser(parseTokenList)
        .makeOptionMandatory(),
    )
    .addOption(backendOption())
    .option("--json", "print the answer as JSON")
    .action(async (opts: { model: string; tokens: number[]; backend: BackendChoice; json?: boolean }) => {
      try {
        const r = await modelLogits(opts);
        if (opts.json) io.out(JSON.stringify(r));
        else {
          r.topk.forEach((pairs, p) => {
            io.out(`${p} ${r.tokens[p]}: ${pairs.map(([id, l]) => `${id}:${l.toFixed(4)}`).join(" ")}`);
          });
        }
      } catch (err) {
        fail(io, "logits", err);
      }
    });
}
