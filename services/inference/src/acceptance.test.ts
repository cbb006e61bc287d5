// The node's acceptance book: what `auto` picks and what the heartbeat reports.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AcceptanceBook, VERSIONS_KEPT } from "./acceptance.js";

describe("acceptance book", () => {
  it("auto tries each candidate once, then takes the fastest by decode tokens/s, none among them", () => {
    const book = new AcceptanceBook(1, 0);
    const candidates = ["suffix", "eagle", "none"] as const;
    assert.equal(book.choose(candidates, "python"), "suffix");
    book.record("suffix", "", "python", 10, 20, 80);
    assert.equal(book.choose(candidates, "python"), "eagle");
    book.record("eagle", "v1", "python", 10, 12, 30);
    assert.equal(book.choose(candidates, "python"), "none");
    book.record("none", "", "python", 10, 10, 50);
    assert.equal(book.choose(candidates, "python"), "suffix");
    assert.equal(book.choose(candidates, "c"), "suffix", "another domain starts untried");
  });

  it("judges a drafter over all its versions: one lucky request of an old version does not win for good", () => {
    const book = new AcceptanceBook(1, 0);
    book.record("suffix", "", "python", 10, 20, 40);
    book.record("eagle", "v1", "python", 10, 30, 100);
    for (let v = 2; v <= 10; v++) book.record("eagle", `v${v}`, "python", 10, 11, 10);
    assert.equal(book.choose(["suffix", "eagle"], "python"), "suffix");
  });

  it("keeps the newest versions only, so a node running for days reports a bounded book", () => {
    const book = new AcceptanceBook();
    for (let v = 0; v < 50; v++) book.record("eagle", `v${v}`, "python", 10, 12, 30);
    const versions = book.stats().map((s) => s.speculatorVersion);
    assert.equal(versions.length, VERSIONS_KEPT);
    assert.deepEqual(versions, ["v46", "v47", "v48", "v49"]);
  });

  it("in a new domain, does not try again a drafter that was slower than none everywhere it ran", () => {
    const book = new AcceptanceBook(1, 0);
    for (const domain of ["python", "c"]) {
      book.record("suffix", "", domain, 10, 20, 60);
      book.record("eagle", "v1", domain, 10, 11, 20);
      book.record("none", "", domain, 10, 10, 40);
    }
    const picks = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const d = book.choose(["suffix", "eagle", "none"], "prose");
      picks.add(d);
      book.record(d, d === "eagle" ? "v1" : "", "prose", 10, 12, d === "suffix" ? 50 : 40);
    }
    assert.ok(!picks.has("eagle"), `tried ${[...picks]}`);
    assert.equal(book.choose(["suffix", "eagle", "none"], "prose"), "suffix");
  });

  it("measures again a drafter it has not picked on a domain for 32 choices: one slow moment does not exclude it", () => {
    const book = new AcceptanceBook(1, 0, 32);
    const speed = { suffix: 60, hybrid: 50, none: 40 } as const;
    const picks: string[] = [];
    for (let i = 0; i < 80; i++) {
      const d = book.choose(["suffix", "hybrid", "none"], "python") as keyof typeof speed;
      picks.push(d);
      // suffix's first request ran on a busy moment of the machine; every later one at its real speed.
      const measured = d === "suffix" && picks.filter((p) => p === "suffix").length === 1 ? 20 : speed[d];
      book.record(d, "", "python", 10, 15, measured);
    }
    assert.equal(picks.slice(0, 3).join(","), "suffix,hybrid,none");
    assert.equal(
      picks.at(-1),
      "suffix",
      `after a refresh auto settles on the faster suffix: ${picks.join(" ")}`,
    );
  });
});
