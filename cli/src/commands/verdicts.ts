// `specloop verdicts export --nats URL [--model ID] [--out FILE]`: writes the pairwise-verdict dataset (the
// SPECLOOP_VERDICTS stream, what a V1-PairRL trainer reads) as JSON Lines, one verdict a line, oldest first.
// It reads the stream as it is when the command starts (an ordered, ephemeral consumer: no durable state is
// left behind) and stops at the last message there was then.
import { createWriteStream } from "node:fs";
import { decodeVerdict } from "@specloop/bus";
import { VERDICT_STREAM, verdictSubject } from "@specloop/bus/internal";
import { judgeToJSON, type PairwiseVerdict } from "@specloop/proto";
import { type Command, Option } from "commander";
import { fail } from "../action.js";
import type { Io } from "../io.js";
import { DEFAULT_NATS_URL, type NatsOptions, openBus } from "../options.js";

export interface VerdictsExportOptions extends NatsOptions {
  model?: string;
  out?: string;
}

/** One dataset line, snake_case as in the proto. */
export function verdictLine(v: PairwiseVerdict): string {
  return JSON.stringify({
    tournament_id: v.tournamentId,
    question: v.question,
    candidate_a: v.candidateA,
    candidate_b: v.candidateB,
    p_a: v.pA,
    judge: judgeToJSON(v.judge),
    model_id: v.modelId,
    judged_at: v.judgedAt?.toISOString() ?? null,
  });
}

/** Writes the verdicts through `write`; resolves with how many. */
export async function exportVerdicts(
  options: VerdictsExportOptions,
  write: (line: string) => void,
): Promise<number> {
  const bus = await openBus(options);
  try {
    const subject = options.model === undefined ? undefined : verdictSubject(options.model);
    const info = await bus.jsm.streams.info(
      VERDICT_STREAM,
      subject ? { subjects_filter: subject } : undefined,
    );
    const last = info.state.last_seq;
    if (info.state.messages === 0) return 0;
    const consumer = await bus.js.consumers.get(VERDICT_STREAM, subject ? { filterSubjects: subject } : {});
    let count = 0;
    // fetch ends when no message is pending; a subject filter may leave the stream's last message out.
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1_000 });
      let got = 0;
      let done = false;
      for await (const m of batch) {
        got++;
        write(verdictLine(decodeVerdict(m.data)));
        count++;
        if (m.seq >= last) done = true;
      }
      if (done || got === 0) return count;
    }
  } finally {
    await bus.close();
  }
}

export function addVerdictsCommands(program: Command, io: Io): void {
  const verdicts = program.command("verdicts").description("the verifier's pairwise-verdict dataset on NATS");
  verdicts
    .command("export")
    .description("write every pairwise verdict as JSON Lines (stdout, or --out)")
    .addOption(
      new Option("--nats <url>", "NATS server, e.g. nats://127.0.0.1:4222")
        .env("SPECLOOP_NATS_URL")
        .default(DEFAULT_NATS_URL),
    )
    .addOption(
      new Option("--nats-creds <file>", "NATS credential: an nkey seed file or a .creds file").env(
        "SPECLOOP_NATS_CREDS",
      ),
    )
    .option("--model <id>", "only verdicts on this model's candidates")
    .option("--out <file>", "write here instead of stdout")
    .action(async (opts: VerdictsExportOptions) => {
      try {
        if (opts.out === undefined) {
          await exportVerdicts(opts, (line) => io.out(line));
          return;
        }
        const file = createWriteStream(opts.out);
        const n = await exportVerdicts(opts, (line) => file.write(`${line}\n`));
        await new Promise<void>((resolve, reject) =>
          file.end((err?: Error | null) => (err ? reject(err) : resolve())),
        );
        io.err(`${n} verdicts written to ${opts.out}`);
      } catch (err) {
        fail(io, "verdicts export", err);
      }
    });
}
