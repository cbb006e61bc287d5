import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger } from "./logging.js";

function sink(lines: string[]): Writable {
  return new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
}

test("logging - one JSON line per entry with name, level label and ISO time", () => {
  const lines: string[] = [];
  const logger = createLogger("inference", "info", sink(lines));
  logger.info({ port: 1 }, "hello");
  logger.debug("not at info");
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.name, "inference");
  assert.equal(entry.level, "info");
  assert.equal(entry.msg, "hello");
  assert.equal(entry.port, 1);
  assert.ok(!Number.isNaN(Date.parse(entry.time)), entry.time);
});

test("logging - child loggers carry their bindings and the parent's level", () => {
  const lines: string[] = [];
  const child = createLogger("inference", "warn", sink(lines)).child({ component: "scheduler" });
  child.info("dropped");
  child.warn("kept");
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.component, "scheduler");
  assert.equal(entry.name, "inference");
});
