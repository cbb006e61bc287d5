// What the demo sends: the bundled prompts of models/<name>/prompts, one domain at a time (python, then c,
// then prose, then python again), each request's drafter from a fixed pattern, so every stretch of traffic
// carries the learned head (most of it: its traces train the next version and its tok/s feed the gate),
// the hybrid (suffix where its match is strong, the learned head elsewhere), the suffix drafter (the day-0
// speculator it competes with) and plain decoding (the speed to beat).
import { loadBundledPrompts } from "@specloop/engine";

export const DEMO_DOMAINS = ["python", "c", "prose"] as const;
export type DemoDomain = (typeof DEMO_DOMAINS)[number];

export type DemoDrafter = "eagle" | "hybrid" | "suffix" | "none";

/** One request in five decodes plainly, one drafts with the suffix tree, one with the hybrid, two with eagle. */
export const DRAFTER_PATTERN: readonly DemoDrafter[] = ["eagle", "none", "hybrid", "suffix", "eagle"];

/** The domain of the request at `index`: `phaseRequests` requests each, in DEMO_DOMAINS order, cycling. */
export function domainAt(index: number, phaseRequests: number): DemoDomain {
  const phase = Math.floor(index / phaseRequests) % DEMO_DOMAINS.length;
  return DEMO_DOMAINS[phase] as DemoDomain;
}

export function drafterAt(index: number): DemoDrafter {
  return DRAFTER_PATTERN[index % DRAFTER_PATTERN.length] as DemoDrafter;
}

/** The bundled prompts by domain, each cut to `maxChars` characters. */
export class DemoPrompts {
  private constructor(private readonly byDomain: ReadonlyMap<DemoDomain, readonly string[]>) {}

  static async load(modelDir: string, maxChars: number): Promise<DemoPrompts> {
    const byDomain = new Map<DemoDomain, string[]>();
    for (const p of await loadBundledPrompts(modelDir)) {
      const domain = DEMO_DOMAINS.find((d) => d === p.domain);
      if (domain === undefined) continue;
      const list = byDomain.get(domain) ?? [];
      list.push(p.prompt.slice(0, maxChars));
      byDomain.set(domain, list);
    }
    for (const d of DEMO_DOMAINS) {
      if ((byDomain.get(d) ?? []).length === 0) {
        throw new RangeError(`${modelDir}/prompts has no ${d} prompts; the demo needs python, c and prose`);
      }
    }
    return new DemoPrompts(byDomain);
  }

  /** The prompt of request `index` (by its number, so a restarted demo goes on where it stopped). */
  at(index: number, domain: DemoDomain): string {
    const list = this.byDomain.get(domain) as readonly string[];
    return list[index % list.length] as string;
  }
}
