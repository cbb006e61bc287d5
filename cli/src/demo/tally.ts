// What the demo measured, per row (plain decoding, the suffix drafter, each eagle version) and domain, from
// the last chunk of each Generate call: the node's own speculation stats and decode speed for the request.
import type { SpeculationStats, Usage } from "@specloop/proto";
import type { DemoDomain, DemoDrafter } from "./workload.js";

/** Sums over requests, so every figure is a ratio of sums (long requests weigh what they cost). */
interface Sums {
  requests: number;
  /** Output tokens verified by target passes: accepted + bonus (acceptedPerPass x passes). */
  verified: number;
  passes: number;
  /** Output tokens after the first, and the seconds they took (Usage: first token to last). */
  decodeTokens: number;
  decodeSeconds: number;
}

export interface DemoResult {
  node: string;
  domain: DemoDomain;
  drafter: DemoDrafter;
  /** The eagle version that drafted the request (empty for the other drafters). */
  version: string;
  stats: SpeculationStats | undefined;
  usage: Usage | undefined;
}

export interface TallyRow {
  drafter: DemoDrafter;
  /** The eagle version that drafted (empty for none and suffix). */
  version: string;
  requests: number;
  tokensPerPass: number | undefined;
  tokensPerSecond: number | undefined;
  /**
   * Decode tok/s against plain decoding in the same domains: per domain the ratio of the two, then their
   * geometric mean weighted by this row's requests there (a version that served only c is not compared
   * with python's plain speed). Undefined until plain decoding has been measured in one of its domains.
   */
  speedupVsNone: number | undefined;
  domains: DemoDomain[];
}

const empty = (): Sums => ({ requests: 0, verified: 0, passes: 0, decodeTokens: 0, decodeSeconds: 0 });

function rowKey(drafter: DemoDrafter, version: string): string {
  return drafter === "eagle" ? `eagle ${version}` : drafter;
}

export class DemoTally {
  private readonly sums = new Map<string, Map<DemoDomain, Sums>>();
  private readonly rowsSeen = new Map<string, { drafter: DemoDrafter; version: string }>();
  readonly perNode = new Map<string, number>();
  requests = 0;
  errors = 0;
  lastError = "";

  add(r: DemoResult): void {
    this.requests++;
    this.perNode.set(r.node, (this.perNode.get(r.node) ?? 0) + 1);
    const version = r.drafter === "eagle" ? r.version : "";
    const key = rowKey(r.drafter, version);
    this.rowsSeen.set(key, { drafter: r.drafter, version });
    const byDomain = this.sums.get(key) ?? new Map<DemoDomain, Sums>();
    this.sums.set(key, byDomain);
    const s = byDomain.get(r.domain) ?? empty();
    byDomain.set(r.domain, s);
    s.requests++;
    const passes = r.stats?.targetPasses ?? 0;
    s.passes += passes;
    s.verified += Math.round((r.stats?.acceptedPerPass ?? 0) * passes);
    const tokens = Math.max(0, (r.usage?.completionTokens ?? 0) - 1);
    const tps = r.usage?.decodeTokensPerSecond ?? 0;
    if (tokens > 0 && tps > 0) {
      s.decodeTokens += tokens;
      s.decodeSeconds += tokens / tps;
    }
  }

  fail(message: string): void {
    this.errors++;
    this.lastError = message;
  }

  /** Rows: none, suffix, then eagle versions in id order (ids carry the training step, zero-padded). */
  rows(): TallyRow[] {
    const none = this.sums.get("none");
    const out: TallyRow[] = [];
    for (const [key, row] of this.rowsSeen) {
      const byDomain = this.sums.get(key) as Map<DemoDomain, Sums>;
      const total = empty();
      let logSum = 0;
      let logWeight = 0;
      for (const [domain, s] of byDomain) {
        total.requests += s.requests;
        total.verified += s.verified;
        total.passes += s.passes;
        total.decodeTokens += s.decodeTokens;
        total.decodeSeconds += s.decodeSeconds;
        const base = none?.get(domain);
        if (base !== undefined && base.decodeSeconds > 0 && s.decodeSeconds > 0) {
          const ratio = s.decodeTokens / s.decodeSeconds / (base.decodeTokens / base.decodeSeconds);
          logSum += s.requests * Math.log(ratio);
          logWeight += s.requests;
        }
      }
      out.push({
        drafter: row.drafter,
        version: row.version,
        requests: total.requests,
        tokensPerPass: total.passes > 0 ? total.verified / total.passes : undefined,
        tokensPerSecond: total.decodeSeconds > 0 ? total.decodeTokens / total.decodeSeconds : undefined,
        speedupVsNone: logWeight > 0 ? Math.exp(logSum / logWeight) : undefined,
        domains: [...byDomain.keys()],
      });
    }
    const order = (r: TallyRow) => ["none", "suffix", "hybrid", "eagle"].indexOf(r.drafter);
    return out.sort((a, b) => order(a) - order(b) || a.version.localeCompare(b.version));
  }
}
