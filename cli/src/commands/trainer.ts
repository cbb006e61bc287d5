// `specloop trainer status|pause|resume|config get|config set KEY=VALUE...`: the speculator-trainer's state
// and the operator's controls over its learning (serving is unaffected by any of them). pause, resume and
// config set need the admin token.
import {
  GetTrainerStatusResponse,
  GetTrainingConfigResponse,
  type TrainerStatus,
  UpdateTrainingConfigResponse,
} from "@specloop/proto";
import type { Command } from "commander";
import { fixed } from "../format.js";
import type { Io } from "../io.js";
import { addJsonOption, addTrainerOptions, type JsonOption, type TrainerOptions } from "../options.js";
import { renderFields } from "../table.js";
import { withTrainer } from "./trainer-action.js";
import { configPairs, parseConfigAssignments } from "./training-config.js";

export function statusFields(s: TrainerStatus | undefined): string {
  if (s === undefined) return "no status";
  return renderFields([
    ["model", s.modelId],
    ["training", s.paused ? "paused" : "running"],
    ["live version", s.liveVersionId ? `${s.liveVersionId}${s.pinned ? " (pinned)" : ""}` : undefined],
    ["canary version", s.canaryVersionId || undefined],
    ["training steps", s.trainingSteps],
    ["recent loss", fixed(s.recentLoss, 4)],
    ["traces consumed", s.tracesConsumed],
    ["traces rejected", s.tracesRejected],
    ["backlog", `${s.backlog} traces waiting`],
  ]);
}

type Opts = TrainerOptions & JsonOption;

export function addTrainerCommands(program: Command, io: Io): void {
  const trainer = program
    .command("trainer")
    .description("the speculator-trainer: status, pause and resume learning, its training config");

  addJsonOption(addTrainerOptions(trainer.command("status").description("what the trainer is doing"))).action(
    withTrainer(io, "trainer status", async (api, opts: Opts) => {
      const res = await api.status();
      io.out(opts.json ? JSON.stringify(GetTrainerStatusResponse.toJSON(res)) : statusFields(res.status));
    }),
  );

  for (const [name, what] of [
    ["pause", "stop consuming traces and training (serving is unaffected); needs the admin token"],
    ["resume", "resume training; needs the admin token"],
  ] as const) {
    addJsonOption(addTrainerOptions(trainer.command(name).description(what))).action(
      withTrainer(io, `trainer ${name}`, async (api, opts: Opts) => {
        const res = name === "pause" ? await api.pause() : await api.resume();
        io.out(opts.json ? JSON.stringify(GetTrainerStatusResponse.toJSON(res)) : statusFields(res.status));
      }),
    );
  }

  const config = trainer
    .command("config")
    .description("the training config (what UpdateTrainingConfig changes)");
  addJsonOption(addTrainerOptions(config.command("get").description("print the training config"))).action(
    withTrainer(io, "trainer config get", async (api, opts: Opts) => {
      const res = await api.getConfig();
      if (opts.json) io.out(JSON.stringify(GetTrainingConfigResponse.toJSON(res)));
      else if (res.config) io.out(renderFields(configPairs(res.config)));
    }),
  );
  addJsonOption(
    addTrainerOptions(
      config
        .command("set")
        .description(
          "change fields, e.g. `set learning_rate=1e-4 domains=python,c`; the others stay; needs the admin token",
        )
        .argument("<KEY=VALUE...>", "fields to change (proto names; a list as a,b,c; domains= for all)"),
    ),
  ).action(
    withTrainer(io, "trainer config set", async (api, words: string[], opts: Opts) => {
      const { config: update, updateFields } = parseConfigAssignments(words);
      const res = await api.updateConfig(update, updateFields);
      if (opts.json) io.out(JSON.stringify(UpdateTrainingConfigResponse.toJSON(res)));
      else if (res.config) io.out(renderFields(configPairs(res.config)));
    }),
  );
}
