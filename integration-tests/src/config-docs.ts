// docs/CONFIG.md, generated: every configuration key of every service, from the services' zod schemas.
// The keys, environment variables and kinds are what the runtime's loader walks (configLeaves: exactly
// what it accepts), the defaults what it produces from nothing (configDefaults), the bounds and choices
// the schema's, and each description the JSDoc comment on the key in the schema's source (read through
// the TypeScript compiler, from the config type the schema infers). config-docs.test.ts fails when the
// committed file differs; regenerate with
//   npm run docs:config
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { inferenceConfigSchema } from "@specloop/inference";
import { type ConfigLeaf, configDefaults, configLeaves } from "@specloop/runtime";
import { trainerConfigSchema } from "@specloop/speculator-trainer";
import { verifierConfigSchema } from "@specloop/verifier";
import ts from "typescript";
import { z } from "zod";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const CONFIG_DOC = `${ROOT}docs/CONFIG.md`;

interface ServiceSchema {
  name: string;
  schema: z.ZodObject;
  /** The source file exporting the config type, and the type's name. */
  file: string;
  type: string;
}

export const SERVICES: readonly ServiceSchema[] = [
  {
    name: "inference",
    schema: inferenceConfigSchema,
    file: "services/inference/src/config.ts",
    type: "InferenceConfig",
  },
  {
    name: "speculator-trainer",
    schema: trainerConfigSchema,
    file: "services/speculator-trainer/src/config.ts",
    type: "TrainerConfig",
  },
  {
    name: "verifier",
    schema: verifierConfigSchema,
    file: "services/verifier/src/config.ts",
    type: "VerifierConfig",
  },
];

/** The schema at `path` below `schema`, wrappers and all. */
function schemaAt(schema: z.ZodObject, path: readonly string[]): z.ZodType {
  let node: z.ZodType = schema;
  for (const key of path) {
    let s: z.ZodType = node;
    // Through default/prefault/optional/pipe to the object holding `key`.
    for (;;) {
      if (s instanceof z.ZodObject) break;
      const def = (s as z.ZodType)._zod.def as { innerType?: z.ZodType; in?: z.ZodType };
      const inner = def.innerType ?? def.in;
      if (inner === undefined) throw new Error(`no object at ${path.join(".")}`);
      s = inner;
    }
    node = (s as z.ZodObject).shape[key] as z.ZodType;
  }
  return node;
}

function unwrapped(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
    if (
      ["default", "prefault", "optional", "nullable", "readonly", "catch"].includes(def.type) &&
      def.innerType
    )
      s = def.innerType;
    else if (def.type === "pipe" && def.in) s = def.in;
    else return s;
  }
}

function bound(n: number | null, infinite: number): string | undefined {
  if (n === null || n === infinite || Math.abs(n) >= Number.MAX_SAFE_INTEGER) return undefined;
  return String(n);
}

/** What values a leaf takes: its kind with its bounds or choices. */
export function typeOf(schema: z.ZodType): string {
  const s = unwrapped(schema);
  if (s instanceof z.ZodEnum) return `one of ${s.options.map((o) => `\`${String(o)}\``).join(", ")}`;
  if (s instanceof z.ZodNumber) {
    const kind = s.format !== null && /int/.test(s.format) ? "integer" : "number";
    const lo = bound(s.minValue, Number.NEGATIVE_INFINITY);
    const hi = bound(s.maxValue, Number.POSITIVE_INFINITY);
    if (lo !== undefined && hi !== undefined) return `${kind} in [${lo}, ${hi}]`;
    if (lo !== undefined) return `${kind} >= ${lo}`;
    if (hi !== undefined) return `${kind} <= ${hi}`;
    return kind;
  }
  if (s instanceof z.ZodBoolean) return "boolean";
  if (s instanceof z.ZodString) return "string";
  if (s instanceof z.ZodArray) {
    const element = unwrapped(s.element as z.ZodType);
    if (element instanceof z.ZodObject) return "list of objects (YAML)";
    return `list of ${typeOf(element).replace(/^one of /, "")} (comma-separated)`;
  }
  return "object (YAML)";
}

function valueAt(value: unknown, path: readonly string[]): unknown {
  let v = value;
  for (const key of path) v = v === undefined || v === null ? undefined : (v as Record<string, unknown>)[key];
  return v;
}

function defaultText(value: unknown): string {
  if (value === undefined) return "(none)";
  // A default computed where the service runs is named, not shown as this machine's.
  if (value === hostname()) return "(the host name)";
  if (Array.isArray(value)) return value.length === 0 ? "(empty)" : `\`${value.join(",")}\``;
  if (value === "") return '`""`';
  return `\`${typeof value === "object" ? JSON.stringify(value) : String(value)}\``;
}

function documentation(checker: ts.TypeChecker, symbol: ts.Symbol | undefined): string | undefined {
  if (symbol === undefined) return undefined;
  const doc = ts.displayPartsToString(symbol.getDocumentationComment(checker)).replace(/\s+/g, " ").trim();
  return doc === "" ? undefined : doc;
}

/**
 * For a key with no comment of its own, the comment of what it is made from: `grpcPort:
 * serverConfigSchema.shape.grpcPort.default(50052)` reads the base key's (then portSchema's), `replicas,` the
 * variable's, `x: positiveInt.default(DEFAULT_X)` the constant DEFAULT_X's.
 */
function fallbackDocumentation(
  checker: ts.TypeChecker,
  declaration: ts.Declaration | undefined,
  depth = 0,
): string | undefined {
  if (declaration === undefined || depth > 4) return undefined;
  if (ts.isShorthandPropertyAssignment(declaration)) {
    const symbol = checker.getShorthandAssignmentValueSymbol(declaration);
    return (
      documentation(checker, symbol) ?? fallbackDocumentation(checker, symbol?.declarations?.[0], depth + 1)
    );
  }
  if (ts.isVariableDeclaration(declaration) || ts.isPropertyAssignment(declaration)) {
    const init = declaration.initializer;
    return init === undefined ? undefined : fromExpression(checker, init, depth);
  }
  return undefined;
}

function fromExpression(checker: ts.TypeChecker, start: ts.Expression, depth: number): string | undefined {
  let defaultConstant: string | undefined;
  let expr = start;
  for (;;) {
    if (ts.isCallExpression(expr)) {
      const callee = expr.expression;
      const arg = expr.arguments[0];
      if (ts.isPropertyAccessExpression(callee) && /^(default|prefault)$/.test(callee.name.text) && arg) {
        if (ts.isIdentifier(arg)) defaultConstant ??= documentation(checker, resolve(checker, arg));
      }
      expr = callee;
    } else if (ts.isPropertyAccessExpression(expr)) {
      const symbol = checker.getSymbolAtLocation(expr.name);
      const found =
        documentation(checker, symbol) ??
        fallbackDocumentation(checker, symbol?.declarations?.[0], depth + 1);
      if (found !== undefined) return found;
      expr = expr.expression;
    } else if (ts.isIdentifier(expr)) {
      const symbol = resolve(checker, expr);
      // `z` itself (z.int()...) documents nothing about the key.
      if (symbol === undefined || symbol.getName() === "z") return defaultConstant;
      return (
        documentation(checker, symbol) ??
        fallbackDocumentation(checker, symbol.declarations?.[0], depth + 1) ??
        defaultConstant
      );
    } else return defaultConstant;
  }
}

function resolve(checker: ts.TypeChecker, id: ts.Identifier): ts.Symbol | undefined {
  const symbol = checker.getSymbolAtLocation(id);
  return symbol !== undefined && symbol.flags & ts.SymbolFlags.Alias
    ? checker.getAliasedSymbol(symbol)
    : symbol;
}

/** JSDoc of every property of the config type, by dotted path. */
function descriptions(program: ts.Program, file: string, typeName: string): Map<string, string> {
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(`${ROOT}${file}`);
  if (source === undefined) throw new Error(`${file} is not in the program`);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  const alias =
    moduleSymbol && checker.getExportsOfModule(moduleSymbol).find((s) => s.getName() === typeName);
  if (alias === undefined) throw new Error(`${file} exports no ${typeName}`);
  const out = new Map<string, string>();
  const walk = (type: ts.Type, path: string[], depth: number): void => {
    if (depth > 6) return;
    for (const p of checker.getPropertiesOfType(type)) {
      const key = [...path, p.getName()];
      const doc = documentation(checker, p) ?? fallbackDocumentation(checker, p.declarations?.[0]);
      if (doc !== undefined) out.set(key.join("."), doc);
      const pt = checker.getNonNullableType(checker.getTypeOfSymbol(p));
      if (pt.getFlags() & ts.TypeFlags.Object && !checker.isArrayType(pt)) walk(pt, key, depth + 1);
    }
  };
  walk(checker.getDeclaredTypeOfSymbol(alias), [], 0);
  return out;
}

function program(): ts.Program {
  const configPath = `${ROOT}integration-tests/tsconfig.json`;
  const parsed = ts.getParsedCommandLineOfConfigFile(
    configPath,
    {},
    { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined },
  );
  if (parsed === undefined) throw new Error(`cannot read ${configPath}`);
  return ts.createProgram(
    SERVICES.map((s) => `${ROOT}${s.file}`),
    // Resolve the workspace packages to their sources, as the tests do (no build needed).
    { ...parsed.options, customConditions: ["source"], noEmit: true },
  );
}

/** A markdown table with every column padded to its widest cell (as the formatter lays it out). */
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|");
}

export function renderConfigDocs(): string {
  const prog = program();
  const lines = [
    "# Configuration",
    "",
    "<!-- Generated by integration-tests/src/config-docs.ts from the services' config schemas: do not edit;",
    "     run `npm run docs:config` (config-docs.test.ts fails when this file is stale). -->",
    "",
    "Every service reads its configuration from the schema's defaults, then an optional YAML file",
    "(`SPECLOOP_CONFIG=path.yaml`), then environment variables; each later source wins. YAML keys are the",
    "camelCase paths below (`scheduler.kvBudgetMib` is `scheduler: { kvBudgetMib: 512 }`); an environment",
    "variable is `SPECLOOP_` + the path in UPPER_SNAKE with `__` between levels. Lists in the environment are",
    "comma-separated; lists of objects (`server.auth.tokens`) only in YAML. An unknown key or an invalid value",
    "stops the service with one line naming the key (exit 2).",
    "",
    ...SERVICES.map((s) => `- [${s.name}](#${s.name})`),
  ];
  for (const service of SERVICES) {
    const docs = descriptions(prog, service.file, service.type);
    const defaults = configDefaults(service.schema);
    const leaves: ConfigLeaf[] = configLeaves(service.schema);
    lines.push("", `## ${service.name}`, "");
    lines.push(
      ...table(
        ["key", "environment variable", "type", "default", "what"],
        leaves.map((leaf) => {
          const key = leaf.path.join(".");
          // A key without its own comment takes its section's (server.auth.tokens under server.auth).
          const what = docs.get(key) ?? "";
          return [
            `\`${key}\``,
            `\`${leaf.env}\``,
            escapeCell(typeOf(schemaAt(service.schema, leaf.path))),
            escapeCell(defaultText(valueAt(defaults, leaf.path))),
            escapeCell(what),
          ];
        }),
      ),
    );
  }
  return `${lines.join("\n")}\n`;
}

if (process.argv.includes("--write")) {
  writeFileSync(CONFIG_DOC, renderConfigDocs());
  console.log(`wrote ${CONFIG_DOC}`);
}
