// The README's `npx specloop` lines, verbatim, as a new user runs them after `bash scripts/setup.sh` (so
// against the built CLI, through npm's bin link): the engine lines on the bundled model, then the admin
// lines against a running system with NATS auth on (a nats-server with every role's credential, an
// inference node and a trainer as real processes). Each line runs in a directory laid out as the repository
// is after `npm start` (.data/ with the credentials and the trainer's tokens; models/ and node_modules/
// linked), with the README's own `export` lines before it; only the addresses, which npm start would make
// the defaults, come from the environment. And the bin itself: before the build it says to build.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { type SecuredTestBus, startSecuredTestBus } from "@specloop/bus/testing";
import { type TempDir, tempDir } from "@specloop/testkit";
import { runCli } from "./run-cli.testing.js";
import { type ServiceProcess, spawnService } from "./service-process.testing.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ADMIN_TOKEN = "readme-admin-token-0123456789";

/** The README's shell lines: 4-space indented, continuations joined. */
function readmeBlocks(): { engine: string[]; admin: string[]; exports: string[] } {
  const text = readFileSync(join(ROOT, "README.md"), "utf8");
  const adminAt = text.indexOf("## The admin CLI");
  const lines = (part: string) =>
    part
      .replace(/\\\n\s+/g, "")
      .split("\n")
      .filter((l) => l.startsWith("    "))
      .map((l) => l.trim());
  const next = text.indexOf("\n## ", adminAt + 1);
  const engine = lines(text.slice(0, adminAt)).filter((l) => l.startsWith("npx specloop "));
  const adminPart = lines(text.slice(adminAt, next === -1 ? undefined : next));
  return {
    engine,
    admin: adminPart.filter((l) => l.startsWith("npx specloop ")),
    exports: adminPart.filter((l) => l.startsWith("export ")),
  };
}

interface Shell {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dir: TempDir;
let env: NodeJS.ProcessEnv;

function shell(script: string, cwd: string): { child: ChildProcess; done: Promise<Shell> } {
  const child = spawn("sh", ["-c", script], { cwd, env, detached: true });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => {
    stdout += d;
  });
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  const done = new Promise<Shell>((resolve) =>
    child.on("close", (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done };
}

before(() => {
  dir = tempDir("specloop-readme-");
  env = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: "test", npm_config_offline: "true" };
  // npx must find the workspace's bin, never ask a registry for a package named "specloop".
  symlinkSync(join(ROOT, "node_modules"), join(dir.path, "node_modules"));
  symlinkSync(join(ROOT, "models"), join(dir.path, "models"));
});
after(() => dir?.dispose());

describe("cli readme", () => {
  it("the bin npm links exists before the build, and says to build", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "cli/package.json"), "utf8")) as {
      bin: { specloop: string };
    };
    const bare = join(dir.path, "bare");
    mkdirSync(join(bare, "bin"), { recursive: true });
    copyFileSync(join(ROOT, "cli", pkg.bin.specloop), join(bare, "bin/specloop.js"));
    const r = await shell(`node ${join(bare, "bin/specloop.js")} --help`, dir.path).done;
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the CLI is not built yet .* npm run build/s);
  });

  it("the engine lines run verbatim on the bundled model", async () => {
    const { engine } = readmeBlocks();
    assert.ok(engine.length >= 3, engine.join("\n"));
    for (const line of engine) {
      const r = await shell(line, dir.path).done;
      assert.equal(r.code, 0, `${line}\n${r.stderr}`);
      if (line.includes("--json")) JSON.parse(r.stdout);
    }
  });

  describe("against a running system", () => {
    let secured: SecuredTestBus;
    let node: ServiceProcess;
    let trainer: ServiceProcess;

    before(async () => {
      secured = await startSecuredTestBus();
      // What npm start leaves under .data/ (credentials, the trainer's tokens).
      const creds = join(dir.path, ".data/bus/credentials");
      mkdirSync(creds, { recursive: true });
      for (const role of ["operator", "admin"] as const) {
        copyFileSync(secured.credentials.credentialsFile(role), join(creds, `${role}.nk`));
      }
      const tokens = join(dir.path, ".data/trainer-tokens.yaml");
      writeFileSync(tokens, `- identity: local-admin\n  roles: [admin]\n  token: ${ADMIN_TOKEN}\n`);
      const bus = (role: "node" | "trainer") => ({
        SPECLOOP_BUS__URLS: secured.server.url,
        SPECLOOP_BUS__CREDENTIALS_FILE: secured.credentials.credentialsFile(role),
      });
      node = await spawnService("inference", {
        ...bus("node"),
        SPECLOOP_NODE__BACKEND: "cpu",
        SPECLOOP_NODE__CPU_THREADS: "1",
        SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "500",
        SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
      });
      trainer = await spawnService("speculator-trainer", {
        ...bus("trainer"),
        SPECLOOP_STORE__PATH: join(dir.path, ".data/trainer.sqlite"),
        SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokens,
        SPECLOOP_TRAINER__CPU_THREADS: "1",
      });
      env = {
        ...env,
        SPECLOOP_INFERENCE_ADDRESS: node.address,
        SPECLOOP_TRAINER_ADDRESS: trainer.address,
        SPECLOOP_NATS_URL: secured.server.url,
      };
    });
    after(async () => {
      await trainer?.stop();
      await node?.stop();
      await secured?.stop();
    });

    it("every admin line runs verbatim and succeeds", async () => {
      const { admin, exports } = readmeBlocks();
      const prelude = `${exports.join("\n")}\n`;
      assert.ok(exports.length >= 2 && admin.length >= 8, admin.join("\n"));
      for (const line of admin.filter((l) => !l.includes("traces tail"))) {
        const r = await shell(prelude + line, dir.path).done;
        assert.equal(r.code, 0, `${line}\n${r.stderr}`);
        assert.notEqual(r.stdout.trim(), "", line);
      }
      const config = await runCli(["trainer", "config", "get", "--json"], {
        env: { SPECLOOP_TRAINER_ADDRESS: trainer.address },
      });
      assert.equal(JSON.parse(config.stdout).config.canaryShare, 0.2, "the config set line took effect");
    });

    it("the traces tail line prints live traces, per step, until Ctrl-C", async (t) => {
      const { exports, admin } = readmeBlocks();
      const line = admin.find((l) => l.includes("traces tail")) as string;
      const tail = shell(`${exports.join("\n")}\n${line}`, dir.path);
      // Whatever fails below, the tail's process group must not outlive the test (it would hold the runner).
      t.after(() => {
        if (tail.child.exitCode === null && tail.child.signalCode === null) {
          try {
            process.kill(-(tail.child.pid as number), "SIGKILL");
          } catch {
            // Already gone.
          }
        }
      });
      let printed = "";
      tail.child.stdout?.on("data", (d) => {
        printed += d;
      });
      for (let i = 0; i < 20 && !/request=/.test(printed) && tail.child.exitCode === null; i++) {
        // The draft model always proposes, so every request's trace has verification steps to print.
        const g = await runCli(
          [
            "generate",
            "--prompt",
            "int main(",
            "--max-tokens",
            "8",
            "--domain",
            "c",
            "--drafter",
            "draft-model",
          ],
          {
            env: { SPECLOOP_INFERENCE_ADDRESS: node.address },
          },
        );
        assert.equal(g.code, 0, g.stderr);
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.match(printed, /domain=c +request=\S+ +drafter=\S+ +steps=\d+/);
      assert.match(printed, /^ +@\d+ /m, "--steps prints a line per verification step");
      // Ctrl-C: the terminal signals the whole foreground group (the shell around the line dies of it; the
      // CLI's own exit status on SIGINT is fleet.test.ts's).
      process.kill(-(tail.child.pid as number), "SIGINT");
      const r = await tail.done;
      assert.doesNotMatch(r.stderr, /specloop traces tail:/);
    });
  });
});
