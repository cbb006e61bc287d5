// The replay buffer between intake and training: whole traces, at most `capacity` of them (the oldest go
// first when it is full), sampled with freshness weighting (a trace's weight halves every `halfLifeMs`, so
// the head follows the traffic as it drifts, Aurora's point) and domain balance (a domain is drawn first,
// uniformly among those present, then a trace within it by freshness, so one busy domain cannot crowd out
// the rest). Deterministic given its seed.
import { Rng } from "@specloop/engine";

export interface BufferedTrace<T> {
  item: T;
  domain: string;
  addedAt: number;
  /** Position in intake order (the trainer checkpoints how far it got). */
  seq: number;
}

export interface ReplayBufferOptions {
  capacity: number;
  halfLifeMs: number;
  /** Draw domains uniformly before traces (true), or traces by freshness alone. */
  balanceDomains: boolean;
  seed: number;
}

export function defaultReplayBufferOptions(): ReplayBufferOptions {
  return { capacity: 4096, halfLifeMs: 10 * 60_000, balanceDomains: true, seed: 1 };
}

export class ReplayBuffer<T> {
  private readonly entries: BufferedTrace<T>[] = [];
  private readonly rng: Rng;
  private nextSeq = 0;

  constructor(private readonly options: ReplayBufferOptions = defaultReplayBufferOptions()) {
    this.rng = new Rng(options.seed);
  }

  get size(): number {
    return this.entries.length;
  }

  get capacity(): number {
    return this.options.capacity;
  }

  /** Intake position of the newest trace (the checkpoint's buffer position). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** Age of the oldest trace held, ms (0 when empty). */
  oldestAgeMs(now = Date.now()): number {
    const first = this.entries[0];
    return first === undefined ? 0 : now - first.addedAt;
  }

  add(item: T, domain: string, now = Date.now()): void {
    this.entries.push({ item, domain, addedAt: now, seq: this.nextSeq++ });
    if (this.entries.length > this.options.capacity) this.entries.shift();
  }

  /** `n` traces drawn with replacement by freshness and domain balance; empty when the buffer is. */
  sample(n: number, now = Date.now()): T[] {
    if (this.entries.length === 0) return [];
    const weight = (e: BufferedTrace<T>) => 2 ** (-(now - e.addedAt) / this.options.halfLifeMs);
    const pools = new Map<string, BufferedTrace<T>[]>();
    if (this.options.balanceDomains) {
      for (const e of this.entries) {
        const p = pools.get(e.domain) ?? [];
        p.push(e);
        pools.set(e.domain, p);
      }
    } else pools.set("", this.entries);
    const domains = [...pools.keys()].sort();
    const out: T[] = [];
    for (let i = 0; i < n; i++) {
      const pool = pools.get(domains[this.rng.nextU32() % domains.length] as string) as BufferedTrace<T>[];
      const total = pool.reduce((s, e) => s + weight(e), 0);
      let u = this.rng.next() * total;
      let pick = pool[pool.length - 1] as BufferedTrace<T>;
      for (const e of pool) {
        u -= weight(e);
        if (u <= 0) {
          pick = e;
          break;
        }
      }
      out.push(pick.item);
    }
    return out;
  }

  /** The newest `n` traces (held-out evaluation reads the most recent traffic). */
  newest(n: number): T[] {
    return this.entries.slice(-n).map((e) => e.item);
  }
}
