// Charts of the closed-loop bench (closed-loop.ts) as SVG, rendered by vega-lite + vega in Node (no
// browser; text is measured by estimate, as vega does without node-canvas):
//   <prefix>.svg          accepted tokens per target pass per request index (trailing mean over --trail
//                         requests) for each configuration, one panel per run (greedy, sampled), the
//                         domain shifts marked;
//   <prefix>-speedup.svg  decode speed-up over none per window, same panels, 1.0x marked.
//   node --conditions=source --import tsx bench/plot-closed-loop.ts
//       [--in bench/results/closed-loop-cpu.json,bench/results/closed-loop-cpu-sampled.json]
//       [--out bench/results/closed-loop-cpu] [--trail 8]
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parse, View } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { intArg, parseArgs } from "./common.js";

const args = parseArgs(process.argv.slice(2), new Set());
const inputs = (
  args.get("in") ?? "bench/results/closed-loop-cpu.json,bench/results/closed-loop-cpu-sampled.json"
)
  .split(",")
  .filter((f) => existsSync(f));
const outPrefix = args.get("out") ?? "bench/results/closed-loop-cpu";
const trail = intArg(args, "trail", 8);
if (inputs.length === 0) throw new Error("plot-closed-loop: none of the --in files exists");

/** The parts of closed-loop.ts's JSON read here. */
interface Result {
  sampling: string | { temperature: number };
  configs: string[];
  stream: { shifts: { at: number; from: string; to: string }[] };
  windows: { requests: string; domain: string; speedup: Record<string, number> }[];
  requests: { index: number; domain: string; perPass: Record<string, number> }[];
}

const acceptance: Record<string, string | number>[] = [];
const shifts: Record<string, string | number>[] = [];
const speedups: Record<string, string | number>[] = [];
for (const file of inputs) {
  const r = JSON.parse(readFileSync(file, "utf8")) as Result;
  const run = typeof r.sampling === "string" ? r.sampling : `sampled, temperature ${r.sampling.temperature}`;
  const starts = [0, ...r.stream.shifts.map((s) => s.at)];
  for (const c of r.configs) {
    if (c === "none") continue;
    r.requests.forEach((q, i) => {
      // Trailing harmonic mean within the request's domain (each request made the same tokens).
      const from = Math.max(i + 1 - trail, ...starts.filter((s) => s <= i));
      const w = r.requests.slice(from, i + 1).map((x) => x.perPass[c] as number);
      acceptance.push({
        run,
        config: c,
        request: q.index,
        perPass: w.length / w.reduce((n, x) => n + 1 / x, 0),
      });
    });
    for (const w of r.windows) {
      const [a, b] = w.requests.split("-").map(Number) as [number, number];
      speedups.push({ run, config: c, request: (a + b + 1) / 2, speedup: w.speedup[c] as number });
    }
  }
  for (const s of r.stream.shifts) shifts.push({ run, request: s.at - 0.5, label: `${s.from} -> ${s.to}` });
}

const order = ["suffix", "eagle", "static", "draft-model", "hybrid", "auto", "auto-pooled"];
const color = { field: "config", type: "nominal", sort: order, title: "drafter" } as const;
// The static head is the eagle head until the first shift: dashed, so the two lines stay apart after it.
const strokeDash = { condition: { test: "datum.config === 'static'", value: [5, 3] }, value: [1, 0] };
const shiftLayers = [
  {
    data: { values: shifts },
    mark: { type: "rule", strokeDash: [4, 3], color: "#555" },
    encoding: { x: { field: "request", type: "quantitative" } },
  },
  {
    data: { values: shifts },
    mark: { type: "text", align: "left", dx: 3, dy: -4, baseline: "top", color: "#333" },
    encoding: { x: { field: "request", type: "quantitative" }, y: { value: 0 }, text: { field: "label" } },
  },
];

function chart(title: string, layers: unknown[], values: Record<string, string | number>[]): TopLevelSpec {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    data: { values },
    facet: { row: { field: "run", type: "nominal", title: null } },
    spec: { width: 640, height: 220, layer: [...layers] },
    resolve: { scale: { y: "independent" } },
  } as unknown as TopLevelSpec;
}

// Shift rules are drawn per panel: their data carries `run` like the lines' data.
function withShifts(values: Record<string, string | number>[]): Record<string, string | number>[] {
  return [...values, ...shifts.map((s) => ({ ...s, config: "shift" }))];
}

const acceptanceSpec = chart(
  `Accepted tokens per target pass by request index (trailing mean of ${trail} requests)`,
  [
    {
      transform: [{ filter: "datum.config !== 'shift'" }],
      mark: { type: "line", strokeWidth: 1.5 },
      encoding: {
        x: { field: "request", type: "quantitative", title: "request index" },
        y: { field: "perPass", type: "quantitative", title: "tokens / pass", scale: { zero: false } },
        color,
        strokeDash,
      },
    },
    ...shiftLayers.map((l) => ({
      ...l,
      data: undefined,
      transform: [{ filter: "datum.config === 'shift'" }],
    })),
  ],
  withShifts(acceptance),
);
const speedupSpec = chart(
  "Decode speed-up over none per window of requests",
  [
    {
      transform: [{ filter: "datum.config !== 'shift'" }],
      mark: { type: "line", point: true, strokeWidth: 1.5 },
      encoding: {
        x: { field: "request", type: "quantitative", title: "request index (window middle)" },
        y: { field: "speedup", type: "quantitative", title: "x none" },
        color,
        strokeDash,
      },
    },
    { mark: { type: "rule", color: "#999" }, encoding: { y: { datum: 1 } } },
    ...shiftLayers.map((l) => ({
      ...l,
      data: undefined,
      transform: [{ filter: "datum.config === 'shift'" }],
    })),
  ],
  withShifts(speedups),
);

for (const [spec, file] of [
  [acceptanceSpec, `${outPrefix}.svg`],
  [speedupSpec, `${outPrefix}-speedup.svg`],
] as const) {
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  writeFileSync(file, await view.toSVG());
  view.finalize();
  console.error(`plot-closed-loop: ${file}`);
}
