import assert from "node:assert/strict";
import { test } from "node:test";
import { renderFields, renderTable } from "./table.js";

test("table - columns padded to the widest cell, numbers right-aligned, missing cells as -", () => {
  assert.equal(
    renderTable(
      ["NODE", "TOK/S", "STATE"],
      [
        ["node-a", "123.4", "ok"],
        ["n", 7, undefined],
      ],
    ),
    ["NODE    TOK/S  STATE", "node-a  123.4  ok", "n           7  -"].join("\n"),
  );
  assert.equal(
    renderFields([
      ["model", "tiny-code"],
      ["canary version", undefined],
    ]),
    "model           tiny-code\ncanary version  -",
  );
});
