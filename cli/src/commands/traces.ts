// `specloop traces tail`: the traces nodes publish, live, one line per trace message (a long request's trace
// comes in several chunks): node, model, domain, request, the drafter and speculator version, and per
// verification step what was proposed and what the target accepted (--steps). It reads through an
// ephemeral consumer that starts at the next message (or, with --last N, N messages back) and that the
// server forgets soon after the command stops; it acknowledges nothing, so it takes no trace from the
// trainer. Traces hold users' prompts: the operator NATS role may not read them; use a credential that may.
import { decodeTrace, TRACE_STREAM, traceSubject } from "@specloop/bus";
import type { Trace, VerificationStep } from "@specloop/proto";
import { type Command, Option } from "commander";
import { AckPolicy, type ConsumerConfig, DeliverPolicy, nanos } from "nats";
import { action } from "../action.js";
import { EXIT } from "../exit-codes.js";
import { drafterName, fixed, roleName, time } from "../format.js";
import type { Io } from "../io.js";
import {
  addJsonOption,
  addNatsOptions,
  type JsonOption,
  type NatsOptions,
  openBus,
  positiveInt,
} from "../options.js";

/** The server drops the tail's consumer this long after the command stops pulling. */
const TAIL_INACTIVE_MS = 30_000;

export interface TailOptions extends NatsOptions, JsonOption {
  model?: string;
  domain?: string;
  node?: string;
  last?: number;
  count?: number;
  steps?: boolean;
}

/** Output tokens per target pass of some steps: each step commits its accepted tokens plus one. */
function perPass(steps: readonly VerificationStep[]): number | undefined {
  if (steps.length === 0) return undefined;
  return steps.reduce((s, st) => s + st.acceptedIndices.length + 1, 0) / steps.length;
}

/** A trace message as scripts read it: the hidden features and top-k targets left out. */
export function traceSummary(t: Trace): Record<string, unknown> {
  return {
    traceId: t.traceId,
    requestId: t.requestId,
    chunkIndex: t.chunkIndex,
    final: t.final,
    modelId: t.modelId,
    nodeId: t.nodeId,
    domain: t.domain,
    drafter: drafterName(t.drafter),
    speculatorRole: roleName(t.speculatorRole),
    promptTokens: t.promptTokenIds.length,
    outputTokens: t.outputTokenIds.length,
    acceptedPerPass: perPass(t.steps) ?? null,
    steps: t.steps.map((s) => ({
      outputOffset: s.outputOffset,
      drafter: drafterName(s.drafter),
      speculatorVersion: s.speculatorVersion,
      proposed: s.proposedTokenIds.length,
      accepted: s.acceptedIndices.length,
    })),
    finishedAt: t.finishedAt?.toISOString() ?? null,
  };
}

export function traceLine(t: Trace): string {
  const proposed = t.steps.reduce((s, st) => s + st.proposedTokenIds.length, 0);
  const accepted = t.steps.reduce((s, st) => s + st.acceptedIndices.length, 0);
  const versions = [...new Set(t.steps.map((s) => s.speculatorVersion).filter((v) => v !== ""))];
  const drafters = [...new Set(t.steps.map((s) => drafterName(s.drafter)))];
  const role = roleName(t.speculatorRole);
  return [
    time(t.finishedAt ?? t.startedAt) ?? "-",
    t.nodeId,
    t.modelId,
    `domain=${t.domain || "(none)"}`,
    `request=${t.requestId}`,
    t.final && t.chunkIndex === 0 ? "" : `chunk=${t.chunkIndex}${t.final ? " (last)" : ""}`,
    `drafter=${drafters.join(",") || drafterName(t.drafter)}`,
    versions.length > 0 ? `version=${versions.join(",")}${role !== "unspecified" ? ` (${role})` : ""}` : "",
    `steps=${t.steps.length} proposed=${proposed} accepted=${accepted}`,
    t.steps.length > 0 ? `tokens/pass=${fixed(perPass(t.steps))}` : "",
  ]
    .filter((s) => s !== "")
    .join("  ");
}

export function stepLine(s: VerificationStep): string {
  return (
    `    @${s.outputOffset}  ${drafterName(s.drafter)}${s.speculatorVersion ? `@${s.speculatorVersion}` : ""}` +
    `  proposed ${s.proposedTokenIds.length}  accepted ${s.acceptedIndices.length}  bonus ${s.bonusTokenId}`
  );
}

function matches(t: Trace, opts: TailOptions): boolean {
  return (
    (opts.domain === undefined || t.domain === opts.domain) &&
    (opts.node === undefined || t.nodeId === opts.node)
  );
}

export function addTracesCommands(program: Command, io: Io): void {
  const traces = program.command("traces").description("the traces nodes publish on NATS");
  addJsonOption(
    addNatsOptions(
      traces
        .command("tail")
        .description("print traces as they arrive (Ctrl-C stops); per step, proposed and accepted tokens")
        .option("--model <id>", "only this model's traces")
        .option("--domain <tag>", "only this domain")
        .option("--node <id>", "only this node's traces")
        .addOption(
          new Option("--last <n>", "start n messages back instead of at the next one").argParser(positiveInt),
        )
        .addOption(new Option("--count <n>", "stop after n traces").argParser(positiveInt))
        .option("--steps", "a line per verification step too"),
    ),
  ).action(
    action(io, "traces tail", async (opts: TailOptions) => {
      const bus = await openBus(opts);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        // An ephemeral pull consumer that acknowledges nothing, made here rather than as nats.js's ordered
        // consumer: a credential that may not read traces is refused at once (the ordered consumer would
        // retry forever), and the server removes it a little after this command stops.
        const config: Partial<ConsumerConfig> = {
          ack_policy: AckPolicy.None,
          deliver_policy: DeliverPolicy.New,
          inactive_threshold: nanos(TAIL_INACTIVE_MS),
          mem_storage: true,
          num_replicas: 1,
          ...(opts.model !== undefined ? { filter_subject: traceSubject(opts.model) } : {}),
        };
        if (opts.last !== undefined) {
          const info = await bus.jsm.streams.info(TRACE_STREAM);
          // `last` counts back over the whole stream: with --model, other models' messages count too and
          // the filter drops them, so fewer may show.
          config.deliver_policy = DeliverPolicy.StartSequence;
          config.opt_start_seq = Math.max(info.state.first_seq, info.state.last_seq - opts.last + 1);
        }
        const created = await bus.jsm.consumers.add(TRACE_STREAM, config);
        const consumer = await bus.js.consumers.get(TRACE_STREAM, created.name);
        const messages = await consumer.consume();
        stop.signal.addEventListener("abort", () => void messages.stop(), { once: true });
        let shown = 0;
        for await (const m of messages) {
          let trace: Trace;
          try {
            trace = decodeTrace(m.data);
          } catch (err) {
            io.err(
              `specloop traces tail: skipped an invalid message (seq ${m.seq}): ${(err as Error).message}`,
            );
            continue;
          }
          if (!matches(trace, opts)) continue;
          if (opts.json) io.out(JSON.stringify(traceSummary(trace)));
          else {
            io.out(traceLine(trace));
            if (opts.steps) for (const s of trace.steps) io.out(stepLine(s));
          }
          shown++;
          if (opts.count !== undefined && shown >= opts.count) break;
        }
        return EXIT.ok;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await bus.close();
      }
    }),
  );
}
