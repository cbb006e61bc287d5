import assert from "node:assert/strict";
import { test } from "node:test";
import { TrainingConfig } from "@specloop/proto";
import { CliError, EXIT } from "../exit-codes.js";
import { configPairs, parseConfigAssignments, TRAINING_CONFIG_FIELDS } from "./training-config.js";

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

test("training config - the keys are every TrainingConfig field, by proto name", () => {
  const fields = Object.keys(TrainingConfig.create());
  assert.deepEqual(Object.keys(TRAINING_CONFIG_FIELDS).sort(), fields.map(snake).sort());
  for (const [key, { field }] of Object.entries(TRAINING_CONFIG_FIELDS)) assert.equal(snake(field), key);
});

test("training config - KEY=VALUE words become the update and its update_fields", () => {
  const { config, updateFields } = parseConfigAssignments([
    "learning_rate=1e-4",
    "batch_size=16",
    "domains=python, c",
  ]);
  assert.deepEqual(updateFields, ["learning_rate", "batch_size", "domains"]);
  assert.equal(config.learningRate, 1e-4);
  assert.equal(config.batchSize, 16);
  assert.deepEqual(config.domains, ["python", "c"]);
  assert.deepEqual(parseConfigAssignments(["domains="]).config.domains, []);
  assert.deepEqual(configPairs(TrainingConfig.create({ batchSize: 3 })).slice(0, 2), [
    ["learning_rate", "0"],
    ["batch_size", "3"],
  ]);
});

test("training config - bad words are usage errors naming what is wrong", () => {
  const cases: [string[], RegExp][] = [
    [[], /at least one KEY=VALUE/],
    [["batch_size"], /"batch_size" is not KEY=VALUE/],
    [["=4"], /"=4" is not KEY=VALUE/],
    [["batchSize=4"], /unknown key "batchSize"; keys: learning_rate/],
    [["batch_size=four"], /batch_size: "four" is not a number/],
    [["batch_size=1.5"], /batch_size: "1.5" is not a whole number/],
    [["learning_rate="], /learning_rate: "" is not a number/],
    [["batch_size=1", "batch_size=2"], /batch_size is given twice/],
  ];
  for (const [words, message] of cases) {
    assert.throws(
      () => parseConfigAssignments(words),
      (err: unknown) => err instanceof CliError && err.exitCode === EXIT.usage && message.test(err.message),
      words.join(" "),
    );
  }
});
