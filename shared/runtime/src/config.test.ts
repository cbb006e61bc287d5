import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { z } from "zod";
import { configDefaults, loadConfig } from "./config.js";
import { configLeaves, envVarName } from "./config-schema.js";
import {
  DEFAULT_GRPC_PORT,
  DEFAULT_HOST,
  DEFAULT_SHUTDOWN_GRACE_MS,
  serviceConfigSchema,
} from "./config-sections.js";
import { ConfigError } from "./errors.js";

const schema = serviceConfigSchema.extend({
  bus: z.object({
    url: z.string().default("nats://127.0.0.1:4222"),
    traceStream: z.object({
      maxBytes: z
        .int()
        .min(1)
        .default(1 << 20),
      replicas: z.int().min(1).max(5).default(1),
    }),
    seeds: z.array(z.string()).default([]),
    tls: z.boolean().default(false),
  }),
  tags: z.object({ domain: z.string() }).optional(),
});

const dir = mkdtempSync(join(tmpdir(), "specloop-config-"));
function yamlFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The ConfigError loadConfig throws, checked to name `key`. */
function configError(fn: () => unknown, key: string): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.key, key, err.message);
    assert.ok(err.message.includes(key), err.message);
    return err;
  }
  throw new Error("expected a ConfigError");
}

describe("config", () => {
  test("config - defaults fill every section, nested ones included", () => {
    const config = configDefaults(schema);
    assert.deepEqual(config.server, {
      host: DEFAULT_HOST,
      grpcPort: DEFAULT_GRPC_PORT,
      metricsPort: 0,
      shutdownGraceMs: DEFAULT_SHUTDOWN_GRACE_MS,
      auth: { tokens: [] },
    });
    assert.equal(config.log.level, "info");
    assert.equal(config.bus.traceStream.maxBytes, 1 << 20);
    assert.equal(config.tags, undefined);
  });

  test("config - YAML overrides defaults and env overrides YAML", () => {
    const file = yamlFile(
      "ok.yaml",
      "server:\n  grpcPort: 7000\n  host: 127.0.0.1\nbus:\n  traceStream:\n    maxBytes: 4096\n",
    );
    const config = loadConfig(schema, {
      file,
      env: { SPECLOOP_SERVER__GRPC_PORT: "7001", SPECLOOP_BUS__TLS: "true", SPECLOOP_BUS__SEEDS: "a:1, b:2" },
    });
    assert.equal(config.server.grpcPort, 7001);
    assert.equal(config.server.host, "127.0.0.1");
    assert.equal(config.bus.traceStream.maxBytes, 4096);
    assert.equal(config.bus.traceStream.replicas, 1);
    assert.equal(config.bus.tls, true);
    assert.deepEqual(config.bus.seeds, ["a:1", "b:2"]);
  });

  test("config - SPECLOOP_CONFIG names the file when no option does", () => {
    const file = yamlFile("from-env.yaml", "log:\n  level: debug\n");
    assert.equal(loadConfig(schema, { env: { SPECLOOP_CONFIG: file } }).log.level, "debug");
  });

  test("config - env names follow the documented rule", () => {
    assert.equal(envVarName(["bus", "traceStream", "maxBytes"]), "SPECLOOP_BUS__TRACE_STREAM__MAX_BYTES");
    assert.equal(envVarName(["server", "grpcPort"]), "SPECLOOP_SERVER__GRPC_PORT");
    assert.equal(envVarName(["bus", "natsURL"]), "SPECLOOP_BUS__NATS_URL");
    const envs = configLeaves(schema).map((l) => l.env);
    assert.ok(envs.includes("SPECLOOP_SERVER__SHUTDOWN_GRACE_MS"));
    assert.ok(envs.includes("SPECLOOP_TAGS__DOMAIN"));
  });

  test("config - a non-number env value names the env var", () => {
    const err = configError(
      () => loadConfig(schema, { env: { SPECLOOP_SERVER__GRPC_PORT: "abc" } }),
      "SPECLOOP_SERVER__GRPC_PORT",
    );
    assert.match(err.message, /expected a number, got "abc"/);
  });

  test("config - an out-of-range env number names the env var and the bound", () => {
    const err = configError(
      () => loadConfig(schema, { env: { SPECLOOP_SERVER__GRPC_PORT: "70000" } }),
      "SPECLOOP_SERVER__GRPC_PORT",
    );
    assert.match(err.message, /65535/);
    configError(
      () => loadConfig(schema, { env: { SPECLOOP_SERVER__GRPC_PORT: "1.5" } }),
      "SPECLOOP_SERVER__GRPC_PORT",
    );
    configError(() => loadConfig(schema, { env: { SPECLOOP_BUS__TLS: "maybe" } }), "SPECLOOP_BUS__TLS");
    const level = configError(
      () => loadConfig(schema, { env: { SPECLOOP_LOG__LEVEL: "loud" } }),
      "SPECLOOP_LOG__LEVEL",
    );
    assert.match(level.message, /"info"/);
  });

  test("config - a bad YAML value names its path", () => {
    const file = yamlFile("bad-value.yaml", "bus:\n  traceStream:\n    maxBytes: lots\n");
    const err = configError(() => loadConfig(schema, { file, env: {} }), "bus.traceStream.maxBytes");
    assert.match(err.message, /expected number/);
    assert.match(err.message, /"lots"/);
  });

  test("config - an unknown YAML key is refused by its path", () => {
    const file = yamlFile("unknown.yaml", "bus:\n  traceStream:\n    maxByte: 10\n");
    const err = configError(() => loadConfig(schema, { file, env: {} }), "bus.traceStream.maxByte");
    assert.match(err.message, /unknown key; expected one of: maxBytes, replicas/);
    configError(() => loadConfig(schema, { file: yamlFile("top.yaml", "sever: {}\n"), env: {} }), "sever");
  });

  test("config - a missing file is a clear error naming where its path came from", () => {
    const missing = join(dir, "nope.yaml");
    const viaEnv = configError(
      () => loadConfig(schema, { env: { SPECLOOP_CONFIG: missing } }),
      "SPECLOOP_CONFIG",
    );
    assert.match(viaEnv.message, /cannot read config file ".*nope\.yaml" \(no such file\)/);
    configError(() => loadConfig(schema, { file: missing, env: {} }), missing);
  });

  test("config - unparsable YAML and a non-mapping document are clear errors", () => {
    const broken = yamlFile("broken.yaml", "server:\n  grpcPort: [1, 2\n");
    assert.match(
      configError(() => loadConfig(schema, { file: broken, env: {} }), broken).message,
      /not valid YAML/,
    );
    const list = yamlFile("list.yaml", "- a\n- b\n");
    assert.match(configError(() => loadConfig(schema, { file: list, env: {} }), list).message, /mapping/);
  });

  test("config - a required key left unset says where to set it", () => {
    const required = z.object({ bus: z.object({ url: z.string() }) });
    const err = configError(() => loadConfig(required, { env: {} }), "bus.url");
    assert.match(err.message, /SPECLOOP_BUS__URL/);
  });

  test("config - an optional section appears once one of its keys is set", () => {
    assert.equal(loadConfig(schema, { env: {} }).tags, undefined);
    assert.deepEqual(loadConfig(schema, { env: { SPECLOOP_TAGS__DOMAIN: "python" } }).tags, {
      domain: "python",
    });
  });
});
