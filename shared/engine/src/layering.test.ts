// The engine is a pure-compute library: it may use the leaf package of typed errors, never the service kit
// (@specloop/runtime loads gRPC, pino and protobufjs) nor anything built on it.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SERVICE_PACKAGES = ["@specloop/runtime", "@specloop/bus", "@specloop/store", "@specloop/proto"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

test("engine layering - package.json depends on @specloop/errors and on no service package", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
  assert.ok(deps.includes("@specloop/errors"));
  for (const name of SERVICE_PACKAGES) assert.ok(!deps.includes(name), `depends on ${name}`);
});

test("engine layering - no source file imports a service package", () => {
  const files = [...sources(join(ROOT, "src")), ...sources(join(ROOT, "assembly"))];
  assert.ok(files.length > 50);
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    for (const name of SERVICE_PACKAGES) {
      assert.ok(!new RegExp(`from "${name}(/[^"]*)?"`).test(text), `${file} imports ${name}`);
    }
  }
});
