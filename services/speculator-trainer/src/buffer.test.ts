import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ReplayBuffer } from "./buffer.js";

describe("replay buffer", () => {
  it("holds at most its capacity, dropping the oldest", () => {
    const b = new ReplayBuffer<number>({ capacity: 3, halfLifeMs: 1000, balanceDomains: false, seed: 1 });
    for (let i = 0; i < 5; i++) b.add(i, "python", i);
    assert.equal(b.size, 3);
    assert.deepEqual(b.newest(3), [2, 3, 4]);
    assert.equal(b.lastSeq, 4);
    assert.equal(b.oldestAgeMs(10), 8);
  });

  it("draws fresh traces more often than old ones", () => {
    const b = new ReplayBuffer<string>({ capacity: 100, halfLifeMs: 1000, balanceDomains: false, seed: 2 });
    b.add("old", "python", 0);
    b.add("new", "python", 4000);
    const draws = b.sample(4000, 4000);
    const fresh = draws.filter((d) => d === "new").length / draws.length;
    // Weights 1 and 2^-4: the fresh one is drawn 16/17 of the time.
    assert.ok(Math.abs(fresh - 16 / 17) < 0.02, `fresh share ${fresh}`);
  });

  it("balances domains: a busy domain does not crowd out a quiet one", () => {
    const b = new ReplayBuffer<string>({ capacity: 1000, halfLifeMs: 1e9, balanceDomains: true, seed: 3 });
    for (let i = 0; i < 900; i++) b.add(`py${i}`, "python", 0);
    for (let i = 0; i < 10; i++) b.add(`c${i}`, "c", 0);
    const draws = b.sample(4000, 0);
    const share = draws.filter((d) => d.startsWith("c")).length / draws.length;
    assert.ok(Math.abs(share - 0.5) < 0.03, `c share ${share}`);
  });

  it("is deterministic given its seed", () => {
    const make = () => {
      const b = new ReplayBuffer<number>({ capacity: 50, halfLifeMs: 500, balanceDomains: true, seed: 9 });
      for (let i = 0; i < 50; i++) b.add(i, i % 3 === 0 ? "c" : "python", i * 10);
      return b.sample(20, 600);
    };
    assert.deepEqual(make(), make());
  });
});
