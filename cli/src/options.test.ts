import assert from "node:assert/strict";
import { test } from "node:test";
import { CliError, EXIT } from "./exit-codes.js";
import { tokenOfFile } from "./options.js";

test("options - a token file is the token, or a tokens YAML's admin entry", () => {
  assert.equal(tokenOfFile("t", "  abcdefghijklmnopqrstuvwxyz\n"), "abcdefghijklmnopqrstuvwxyz");
  assert.equal(
    tokenOfFile(
      "t",
      "- identity: ci\n  roles: [run-code]\n  token: not-this-one-0123456789\n" +
        "- identity: local-admin\n  roles: [admin]\n  token: the-admin-token-0123456789\n",
    ),
    "the-admin-token-0123456789",
  );
  for (const [text, message] of [
    ["", /is empty/],
    ["- identity: ci\n  roles: [run-code]\n  token: x\n", /no entry with the admin role/],
    ["- [unclosed", /not a token, nor a YAML list/],
  ] as const) {
    assert.throws(
      () => tokenOfFile("t", text),
      (err: unknown) => err instanceof CliError && err.exitCode === EXIT.auth && message.test(err.message),
    );
  }
});
