// The configuration as documented is the configuration the services load: docs/CONFIG.md is what the
// schemas render to, every variable it names is accepted by the loader, and every config key that
// docs/ARCHITECTURE.md spells is one a service has.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { configDefaults, configLeaves, loadConfig } from "@specloop/runtime";
import { CONFIG_DOC, renderConfigDocs, SERVICES } from "./config-docs.js";

const ARCHITECTURE = fileURLToPath(new URL("../../docs/ARCHITECTURE.md", import.meta.url));

function valueAt(value: unknown, path: readonly string[]): unknown {
  let v = value;
  for (const key of path) v = (v as Record<string, unknown> | undefined)?.[key];
  return v;
}

describe("config docs", () => {
  it("docs/CONFIG.md is what the services' schemas render to", () => {
    assert.equal(
      readFileSync(CONFIG_DOC, "utf8"),
      renderConfigDocs(),
      "docs/CONFIG.md is stale: run `npm run docs:config` and commit it",
    );
  });

  it("every variable the docs name sets its key: the loader takes it and the value arrives", () => {
    for (const { name, schema } of SERVICES) {
      const defaults = configDefaults(schema);
      for (const leaf of configLeaves(schema)) {
        const value = valueAt(defaults, leaf.path);
        if (typeof value !== "number" && typeof value !== "boolean") continue;
        // A value other than the default (one more, one less, or half, within the bounds): it must arrive.
        const candidates = typeof value === "boolean" ? [!value] : [value + 1, value - 1, value / 2];
        const loaded = candidates
          .map((v) => {
            try {
              return { v, config: loadConfig(schema, { env: { [leaf.env]: String(v) } }) };
            } catch {
              return undefined;
            }
          })
          .find((r) => r !== undefined);
        assert.ok(loaded, `${name}: ${leaf.env} refused both ${candidates.join(" and ")}`);
        assert.equal(valueAt(loaded.config, leaf.path), loaded.v, `${name} ${leaf.env}`);
      }
    }
  });

  it("every config key docs/ARCHITECTURE.md spells exists, under the name the loader takes", () => {
    const keys = new Set<string>();
    const sections = new Set<string>();
    for (const { schema } of SERVICES) {
      for (const leaf of configLeaves(schema)) {
        sections.add(leaf.path[0] as string);
        for (let i = 1; i <= leaf.path.length; i++) keys.add(leaf.path.slice(0, i).join("."));
      }
    }
    const text = readFileSync(ARCHITECTURE, "utf8");
    const spelled = [...text.matchAll(/`([a-z][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_*]*)+)`/g)]
      .map((m) => m[1] as string)
      .filter((k) => sections.has(k.split(".")[0] as string))
      // File names (`server.ts`, `gate.test.ts`) are not keys.
      .filter((k) => !/\.(ts|js|mjs|md|json|ya?ml|proto|sh)$/.test(k));
    assert.ok(spelled.length > 5, `found only ${spelled.length} config keys in ARCHITECTURE.md`);
    const unknown = spelled.filter((k) => !keys.has(k.replace(/\.\*$/, "")));
    assert.deepEqual(unknown, [], "keys no service has (the loader would refuse them)");
  });
});
