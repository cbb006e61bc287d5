// Walking a zod object schema: which keys exist, which are leaves, and what a leaf's environment
// variable is called. The config loader uses this to map env vars and YAML keys onto the schema and to
// refuse keys the schema does not know.
import { z } from "zod";

/** Prefix of every config environment variable. */
export const DEFAULT_ENV_PREFIX = "SPECLOOP_";

/** Separates nesting levels in an environment variable name: `server.grpcPort` -> `SERVER__GRPC_PORT`. */
export const ENV_NESTING_SEPARATOR = "__";

/** What a leaf holds, as far as turning an environment string into a value is concerned. */
export type LeafKind = "number" | "boolean" | "string" | "array" | "other";

export interface ConfigLeaf {
  /** Keys from the root, as written in YAML (`["bus", "traceStream", "maxBytes"]`). */
  path: readonly string[];
  /** The environment variable that sets it (`SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES`). */
  env: string;
  kind: LeafKind;
  /** For arrays: what each comma-separated element holds. */
  elementKind?: LeafKind;
}

/** Strips the wrappers that do not change what a value is (default, optional, pipe input, ...). */
export function unwrap(schema: z.ZodType): z.ZodType {
  let s: z.ZodType = schema;
  for (;;) {
    if (
      s instanceof z.ZodDefault ||
      s instanceof z.ZodPrefault ||
      s instanceof z.ZodOptional ||
      s instanceof z.ZodNullable ||
      s instanceof z.ZodReadonly ||
      s instanceof z.ZodCatch
    ) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else {
      return s;
    }
  }
}

/** True when a missing value stays missing (optional without a default). */
export function isOptional(schema: z.ZodType): boolean {
  const r = schema.safeParse(undefined);
  return r.success && r.data === undefined;
}

/** The object schema under the wrappers, if the value is an object. */
export function objectSchema(schema: z.ZodType): z.ZodObject | undefined {
  const s = unwrap(schema);
  return s instanceof z.ZodObject ? s : undefined;
}

/** Object schemas that refuse keys they do not declare; loose and catch-all objects accept any. */
export function isClosedObject(schema: z.ZodType): schema is z.ZodObject {
  if (!(schema instanceof z.ZodObject)) return false;
  const catchall = schema._zod.def.catchall;
  return catchall === undefined || catchall instanceof z.ZodNever;
}

function leafKind(schema: z.ZodType): LeafKind {
  const s = unwrap(schema);
  if (s instanceof z.ZodNumber) return "number";
  if (s instanceof z.ZodBoolean) return "boolean";
  if (s instanceof z.ZodString || s instanceof z.ZodEnum || s instanceof z.ZodLiteral) return "string";
  if (s instanceof z.ZodArray) return "array";
  return "other";
}

/** `traceStream` -> `TRACE_STREAM`, `natsURL` -> `NATS_URL`, `maxBytes2` -> `MAX_BYTES2`. */
export function toEnvSegment(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z])([A-Z][a-z])/g, "$1_$2")
    .replace(/[^A-Za-z0-9]+/g, "_")
    .toUpperCase();
}

/** The environment variable for a config path: prefix + UPPER_SNAKE segments joined by `__`. */
export function envVarName(path: readonly string[], prefix: string = DEFAULT_ENV_PREFIX): string {
  return prefix + path.map(toEnvSegment).join(ENV_NESTING_SEPARATOR);
}

/** Every leaf of an object schema, depth first, in declaration order. */
export function configLeaves(schema: z.ZodObject, prefix: string = DEFAULT_ENV_PREFIX): ConfigLeaf[] {
  const out: ConfigLeaf[] = [];
  const walk = (node: z.ZodObject, path: string[]): void => {
    for (const [key, child] of Object.entries(node.shape)) {
      const childPath = [...path, key];
      const inner = unwrap(child as z.ZodType);
      if (inner instanceof z.ZodObject) {
        walk(inner, childPath);
        continue;
      }
      const kind = leafKind(inner);
      const leaf: ConfigLeaf = { path: childPath, env: envVarName(childPath, prefix), kind };
      if (inner instanceof z.ZodArray) leaf.elementKind = leafKind(inner.element as z.ZodType);
      out.push(leaf);
    }
  };
  walk(schema, []);
  return out;
}
