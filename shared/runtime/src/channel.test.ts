import assert from "node:assert/strict";
import { test } from "node:test";
import { Channel } from "./channel.js";

test("channel: the consumer gets what was pushed, in order, before and after it started waiting", async () => {
  const c = new Channel<number>();
  c.push(1);
  const got: number[] = [];
  const done = (async () => {
    for await (const x of c) got.push(x);
  })();
  await new Promise((r) => setImmediate(r));
  c.push(2);
  c.push(3);
  c.close();
  await done;
  assert.deepEqual(got, [1, 2, 3]);
});

test("channel: a failure reaches the consumer after the queued items", async () => {
  const c = new Channel<string>();
  c.push("a");
  c.fail(new Error("judge failed"));
  const got: string[] = [];
  await assert.rejects(async () => {
    for await (const x of c) got.push(x);
  }, /judge failed/);
  assert.deepEqual(got, ["a"]);
});
