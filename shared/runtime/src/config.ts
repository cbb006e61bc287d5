// The one config loader every service uses. Precedence, lowest first:
//   1. the schema's defaults,
//   2. a YAML file: the `file` option, else the path in SPECLOOP_CONFIG,
//   3. environment variables: SPECLOOP_ + the key path in UPPER_SNAKE, nesting levels joined by `__`:
//        server.grpcPort          -> SPECLOOP_SERVER__GRPC_PORT
//        bus.traceStream.maxBytes -> SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES
//      Numbers and booleans (true/false/1/0) are parsed from the string; arrays are comma-separated.
//      Variables under the prefix that name no key are ignored (other tools share the prefix).
// Every failure is a ConfigError naming the key the way the user wrote it: the env var name, or the
// YAML path (`bus.traceStream.maxBytes`), with what was expected.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import type { z } from "zod";
import {
  type ConfigLeaf,
  configLeaves,
  DEFAULT_ENV_PREFIX,
  envVarName,
  isClosedObject,
  isOptional,
  type LeafKind,
  objectSchema,
  unwrap,
} from "./config-schema.js";
import { ConfigError } from "./errors.js";

export interface LoadConfigOptions {
  /** Environment to read; defaults to process.env. */
  env?: Readonly<Record<string, string | undefined>>;
  /** YAML file to read; when absent, `${envPrefix}CONFIG` may name one; when both are absent, none. */
  file?: string;
  /** Prefix of the environment variables; default "SPECLOOP_". */
  envPrefix?: string;
}

type Plain = Record<string, unknown>;

/** Reads, merges and validates a service's configuration; throws ConfigError on any problem. */
export function loadConfig<S extends z.ZodObject>(schema: S, options: LoadConfigOptions = {}): z.output<S> {
  const env = options.env ?? process.env;
  const prefix = options.envPrefix ?? DEFAULT_ENV_PREFIX;
  // Which values the user set, by dotted path, and the env var that set each (YAML paths map to "").
  const sources = new Map<string, string>();

  const fileVar = `${prefix}CONFIG`;
  const file = options.file ?? (env[fileVar] || undefined);
  const input: Plain = {};
  if (file !== undefined) {
    const fromFile = readYamlFile(file, options.file === undefined ? fileVar : file);
    checkKnownKeys(fromFile, schema, []);
    Object.assign(input, fromFile);
    recordYamlSources(fromFile, [], sources);
  }

  for (const leaf of configLeaves(schema, prefix)) {
    const raw = env[leaf.env];
    if (raw === undefined) continue;
    setPath(input, leaf.path, fromEnvString(raw, leaf));
    sources.set(leaf.path.join("."), leaf.env);
  }

  fillSections(input, schema);
  const result = schema.safeParse(input);
  if (!result.success) throw issueToError(result.error, input, sources, prefix);
  return result.data;
}

/** The configuration with nothing set: every default, as loadConfig would return it. */
export function configDefaults<S extends z.ZodObject>(schema: S): z.output<S> {
  return loadConfig(schema, { env: {} });
}

function readYamlFile(path: string, key: string): Plain {
  // Named by its path the file needs no more naming; named by SPECLOOP_CONFIG the message says which file.
  const file = key === path ? "" : `file "${path}" `;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : String(err);
    throw new ConfigError(key, `cannot read config ${file || "file "}(${why})`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    const msg = err instanceof Error ? (err.message.split("\n")[0] ?? "").replace(/:$/, "") : String(err);
    throw new ConfigError(key, `${file ? `config ${file}is not` : "not"} valid YAML: ${msg}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlain(doc))
    throw new ConfigError(
      key,
      `${file ? `config ${file}must hold` : "must hold"} a mapping of keys at the top level`,
    );
  return doc;
}

/** Refuses YAML keys the schema does not declare, naming the first one by its full path. */
function checkKnownKeys(value: unknown, schema: z.ZodType, path: string[]): void {
  const node = unwrap(schema);
  if (!isClosedObject(node) || !isPlain(value)) return;
  const known = Object.keys(node.shape);
  for (const [key, child] of Object.entries(value)) {
    const childPath = [...path, key];
    const childSchema = node.shape[key] as z.ZodType | undefined;
    if (childSchema === undefined) {
      throw new ConfigError(childPath.join("."), `unknown key; expected one of: ${known.join(", ")}`);
    }
    checkKnownKeys(child, childSchema, childPath);
  }
}

function recordYamlSources(value: unknown, path: string[], sources: Map<string, string>): void {
  if (path.length > 0) sources.set(path.join("."), "");
  if (isPlain(value)) for (const [k, v] of Object.entries(value)) recordYamlSources(v, [...path, k], sources);
}

/** Missing required sections become `{}` so their own defaults apply (zod 4 does not parse defaults). */
function fillSections(input: Plain, schema: z.ZodObject): void {
  for (const [key, child] of Object.entries(schema.shape)) {
    const section = objectSchema(child as z.ZodType);
    if (section === undefined) continue;
    // An optional section stays absent unless something inside it was set.
    if (input[key] === undefined && !isOptional(child as z.ZodType)) input[key] = {};
    const next = input[key];
    if (isPlain(next)) fillSections(next, section);
  }
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const TRUE = new Set(["true", "1", "yes", "on"]);
const FALSE = new Set(["false", "0", "no", "off"]);

function fromEnvString(raw: string, leaf: ConfigLeaf): unknown {
  if (leaf.kind === "array") {
    const items = raw.trim() === "" ? [] : raw.split(",").map((s) => s.trim());
    return items.map((item) => coerce(item, leaf.elementKind ?? "string", leaf.env));
  }
  return coerce(raw, leaf.kind, leaf.env);
}

function coerce(raw: string, kind: LeafKind, envName: string): unknown {
  const s = raw.trim();
  if (kind === "number") {
    if (!NUMBER.test(s)) throw new ConfigError(envName, `expected a number, got ${JSON.stringify(raw)}`);
    return Number(s);
  }
  if (kind === "boolean") {
    if (TRUE.has(s.toLowerCase())) return true;
    if (FALSE.has(s.toLowerCase())) return false;
    throw new ConfigError(envName, `expected true or false, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

function issueToError(
  error: z.ZodError,
  input: Plain,
  sources: Map<string, string>,
  prefix: string,
): ConfigError {
  const issue = error.issues[0]!;
  const path = issue.path.map(String);
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem(s))` : "";
  // The longest prefix of the path that a user set names the key; an env var wins for its whole value.
  for (let n = path.length; n > 0; n--) {
    const source = sources.get(path.slice(0, n).join("."));
    if (source === undefined) continue;
    const key = source !== "" ? source : path.join(".");
    const got = describe(getPath(input, path));
    return new ConfigError(key, `${lowerFirst(issue.message)}, got ${got}${more}`);
  }
  const dotted = path.join(".");
  if (getPath(input, path) === undefined) {
    const where = `set ${dotted} in the config file or ${envVarName(path, prefix)}`;
    return new ConfigError(dotted, `required but missing: ${where}${more}`);
  }
  return new ConfigError(dotted || "(root)", `${lowerFirst(issue.message)}${more}`);
}

function describe(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

function isPlain(v: unknown): v is Plain {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function setPath(target: Plain, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (!isPlain(next)) node[key] = {};
    node = node[key] as Plain;
  }
  node[path[path.length - 1]!] = value;
}

function getPath(target: unknown, path: readonly string[]): unknown {
  let node: unknown = target;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Plain)[key];
  }
  return node;
}
