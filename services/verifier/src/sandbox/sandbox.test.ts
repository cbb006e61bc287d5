// The sandbox on its own, with real bubblewrap, real interpreters and hostile code kept small (a few forks,
// tens of MiB, seconds at most): what a candidate sees, the limits and how exactly they hold, that nothing
// survives a run or the verifier, and that a sandbox failure is never mistaken for a candidate's.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ErrorKind } from "@specloop/runtime";
import { SandboxFailedError, SandboxUnavailableError } from "../errors.js";
import type { RunRequest } from "./index.js";
import { MountPlan } from "./layout.js";
import { runOnce } from "./process.js";
import { Slots } from "./slots.js";
import { SANDBOX_REFUSED, testSandbox } from "./test-support.js";

const skip = SANDBOX_REFUSED;
const sandbox = testSandbox();
const MARK = `specloop-sandbox-test-${process.pid}-${Date.now()}`;
const RUN_ONE = fileURLToPath(new URL("./testdata/run-one.ts", import.meta.url));

function run(code: string, options: Partial<RunRequest> = {}) {
  return sandbox.withSlot(undefined, () =>
    sandbox.run({ language: "python", code, stdin: "", timeLimitMs: 5_000, memoryLimitMb: 128, ...options }),
  );
}

function marked(): number[] {
  const found: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(MARK)) found.push(Number(e));
    } catch {
      // gone
    }
  }
  return found.filter((p) => p !== process.pid);
}

const py = (...lines: string[]): string => lines.join("\n");

describe("sandbox - what a candidate sees", () => {
  test("sandbox - nobody, no capabilities, no network, an empty environment and only its interpreter", {
    skip,
  }, async () => {
    const host = createServer((s) => s.destroy());
    await once(host.listen(0, "127.0.0.1"), "listening");
    const port = (host.address() as { port: number }).port;
    try {
      const r = await run(
        py(
          "import json, os, socket",
          "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)",
          "net = []",
          `for addr in (('127.0.0.1', ${port}), ('1.1.1.1', 53)):`,
          "    try:",
          "        socket.create_connection(addr, timeout=1); net.append(addr[0])",
          "    except OSError:",
          "        pass",
          "try:",
          "    socket.getaddrinfo('example.com', 80); net.append('dns')",
          "except OSError:",
          "    pass",
          "print(json.dumps({'uid': os.getuid(), 'env': sorted(os.environ), 'root': sorted(os.listdir('/')),",
          "  'procs': [p for p in os.listdir('/proc') if p.isdigit()], 'capeff': status['CapEff'].strip(),",
          "  'nnp': status['NoNewPrivs'].strip(), 'net': net, 'etc': os.path.exists('/etc/passwd'),",
          "  'usr': sorted(os.listdir('/usr'))}))",
        ),
      );
      assert.equal(r.outcome, "exited", r.stderr);
      const seen = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(seen.uid, 65534);
      const env = new Set(["HOME", "LANG", "LC_CTYPE", "MALLOC_ARENA_MAX", "PATH", "PWD", "TMPDIR"]);
      for (const k of seen.env as string[]) assert.ok(env.has(k), `the candidate's environment has ${k}`);
      const top = new Set(["dev", "lib", "lib64", "proc", "sandbox", "tmp", "usr"]);
      for (const d of seen.root as string[]) assert.ok(top.has(d), `the candidate sees /${d}`);
      assert.ok((seen.procs as string[]).length <= 3, `sees processes ${seen.procs}`);
      assert.equal(seen.capeff, "0000000000000000");
      assert.equal(seen.nnp, "1");
      assert.deepEqual(seen.net, []);
      assert.equal(seen.etc, false);
      assert.ok(!(seen.usr as string[]).includes("local"), `/usr holds ${seen.usr}`);
    } finally {
      host.close();
    }
  });

  test("sandbox - only /tmp is writable, and it is small", { skip }, async () => {
    const r = await run(
      py(
        "import os",
        "w = []",
        "for d in ('/', '/usr', '/dev', '/dev/shm', '/sandbox', '/tmp'):",
        "    try:",
        "        open(os.path.join(d, 'f'), 'w').write('x'); w.append(d)",
        "    except OSError:",
        "        pass",
        "n = 0",
        "try:",
        "    with open('/tmp/big', 'wb') as f:",
        "        for _ in range(64):",
        "            f.write(b'x' * (1 << 20)); f.flush(); n += 1",
        "except OSError as e:",
        "    pass",
        "print(w, n)",
      ),
    );
    assert.equal(r.stdout.trim(), "['/tmp'] 15");
  });
});

describe("sandbox - limits", () => {
  test("sandbox - the time limit holds within 100 ms, also while a child holds stdout open", {
    skip,
  }, async () => {
    for (const code of [
      "while True:\n    pass",
      py(
        "import os, time",
        "if os.fork() == 0:",
        "    os.setsid(); time.sleep(5)",
        "while True:",
        "    pass",
      ),
    ]) {
      const r = await run(code, { timeLimitMs: 500 });
      assert.equal(r.outcome, "time_limit");
      // The kill lands at the limit (14-45 ms over on an idle 2-core machine); the bound leaves room for a
      // loaded CI machine's timer latency and still catches a run stretched by a detached child (5 s here).
      assert.ok(r.ms >= 500 && r.ms < 900, `ended after ${r.ms} ms`);
    }
    // A candidate that exits leaves nothing running, and the run ends with it.
    const r = await run(
      py("import os, time", "if os.fork() == 0:", "    os.setsid(); time.sleep(5)", "print('bye')"),
    );
    assert.equal(r.outcome, "exited");
    assert.ok(r.ms < 1_000, `ended after ${r.ms} ms`);
  });

  test("sandbox - memory counts the whole process tree; one process cannot even reserve past it", {
    skip,
  }, async () => {
    const forks = await run(
      py(
        "import os, time",
        "for i in range(3):",
        "    if os.fork() == 0:",
        "        b = bytearray(40 << 20)",
        "        for j in range(0, len(b), 4096):",
        "            b[j] = 1",
        "        time.sleep(3); os._exit(0)",
        "time.sleep(3)",
      ),
      { memoryLimitMb: 96 },
    );
    assert.equal(forks.outcome, "memory_limit");
    assert.ok(forks.ms < 2_000, `took ${forks.ms} ms`);
    const alone = await run("b = bytearray(200 << 20)", { memoryLimitMb: 96 });
    assert.equal(alone.outcome, "exited");
    assert.match(alone.stderr, /MemoryError/);
    const js = await run(
      "const held = []; for (let i = 0; i < 8; i++) held.push(Buffer.alloc(32 << 20, 1)); console.log(held.length);",
      { language: "javascript", memoryLimitMb: 96 },
    );
    assert.equal(js.outcome, "memory_limit");
  });

  test("sandbox - processes are capped per sandbox, not shared between sandboxes", { skip }, async () => {
    const forker = py(
      "import os, time",
      "n = 0",
      "try:",
      "    for i in range(32):",
      "        if os.fork() == 0:",
      "            time.sleep(1); os._exit(0)",
      "        n += 1",
      "except OSError:",
      "    pass",
      "print(n)",
    );
    const both = await Promise.all([
      sandbox.run({ language: "python", code: forker, stdin: "", timeLimitMs: 5_000, memoryLimitMb: 128 }),
      sandbox.run({ language: "python", code: forker, stdin: "", timeLimitMs: 5_000, memoryLimitMb: 128 }),
    ]);
    // maxProcesses = 4 beyond the interpreter, in each sandbox.
    assert.deepEqual(
      both.map((r) => r.stdout.trim()),
      ["4", "4"],
    );
  });

  test("sandbox - output past the cap ends the run", { skip }, async () => {
    const small = testSandbox({ maxOutputBytes: 64 * 1024 });
    const r = await small.run({
      language: "python",
      code: "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)",
      stdin: "",
      timeLimitMs: 5_000,
      memoryLimitMb: 64,
    });
    assert.equal(r.outcome, "output_limit");
    assert.ok(r.ms < 2_000);
  });
});

describe("sandbox - failures", () => {
  test("sandbox - a candidate claiming to be bwrap failing is still a candidate that failed", {
    skip,
  }, async () => {
    const r = await run("import sys\nsys.stderr.write('bwrap: Can\\'t mount proc\\n')\nsys.exit(1)");
    assert.equal(r.outcome, "exited");
    assert.equal(r.exitCode, 1);
  });

  test("sandbox - a sandbox that does not start is an error, never a verdict", { skip }, async () => {
    await assert.rejects(
      runOnce({
        bwrap: "bwrap",
        args: ["--ro-bind", join(tmpdir(), `${MARK}-none`), "/x", "--json-status-fd", "4", "--", "/nowhere"],
        code: "",
        stdin: "",
        timeLimitMs: 5_000,
        memoryLimitBytes: 1 << 30,
        maxOutputBytes: 1024,
      }),
      (err) => err instanceof SandboxFailedError && /did not start the candidate: bwrap: /.test(err.message),
    );
  });

  test("sandbox - the caller's signal ends the run at once, with its reason", { skip }, async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("caller gone")), 300);
    const started = Date.now();
    await assert.rejects(run("while True:\n    pass", { signal: controller.signal }), /caller gone/);
    assert.ok(Date.now() - started < 1_000);
  });

  test("sandbox - no bubblewrap or no interpreter is FAILED_PRECONDITION", async () => {
    for (const broken of [
      testSandbox({ bwrap: "no-such-bwrap" }),
      testSandbox({ python: "no-such-python" }),
    ]) {
      await assert.rejects(
        broken.run({
          language: "python",
          code: "print(1)",
          stdin: "",
          timeLimitMs: 1_000,
          memoryLimitMb: 64,
        }),
        (err) =>
          err instanceof SandboxUnavailableError &&
          err.kind === ErrorKind.FailedPrecondition &&
          /no-such-/.test(err.message),
      );
    }
  });
});

describe("sandbox - the verifier's own process", () => {
  /**
   * Starts run-one.ts with fd 40 open without close-on-exec, as a parent process could leave it (Node marks
   * the low descriptors it inherits close-on-exec itself, but not every one).
   */
  function runOne(code: string, timeLimitMs: number) {
    const child = spawn(
      process.execPath,
      ["--conditions=source", "--import", "tsx", RUN_ONE, "python", String(timeLimitMs)],
      {
        stdio: ["pipe", "pipe", "pipe", ...new Array<"ignore">(37).fill("ignore"), "pipe"],
      },
    );
    child.stdin?.end(code);
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
    });
    return { child, output: () => out };
  }

  test("sandbox - a descriptor the verifier inherited does not reach the candidate", { skip }, async () => {
    const { child, output } = runOne(
      py(
        "import os",
        "try:",
        "    print(os.readlink('/proc/self/fd/40'))",
        "except OSError:",
        "    print('closed')",
      ),
      5_000,
    );
    await once(child, "exit");
    const result = JSON.parse(output()) as { stdout: string };
    assert.match(result.stdout.trim(), /^(\/dev\/null|closed)$/);
  });

  test("sandbox - when the verifier is killed, its sandboxes die with it", { skip }, async () => {
    const { child } = runOne(
      py(
        "import os, sys",
        `os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)', ${JSON.stringify(MARK)}])`,
      ),
      30_000,
    );
    // Starting the verifier process (tsx compiles it) and the sandbox can take a while on a loaded machine.
    const until = Date.now() + 25_000;
    while (marked().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.ok(marked().length > 0, "the candidate never started");
    child.kill("SIGKILL");
    const gone = Date.now() + 2_000;
    while (marked().length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 20));
    const left = marked();
    for (const pid of left) process.kill(pid, "SIGKILL");
    assert.deepEqual(left, [], "the candidate outlived the verifier");
  });
});

describe("sandbox - parts", () => {
  test("slots - at most `size` at once, in order, and a cancelled wait leaves the queue", async () => {
    const slots = new Slots(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const c = slots.acquire().then((release) => {
      order.push("c");
      return release;
    });
    const gone = new AbortController();
    const d = slots.acquire(gone.signal);
    const e = slots.acquire().then((release) => {
      order.push("e");
      return release;
    });
    assert.equal(slots.inUse, 2);
    assert.equal(slots.queued, 3);
    gone.abort(new Error("no longer needed"));
    await assert.rejects(d, /no longer needed/);
    a();
    a(); // a second release of the same slot frees nothing
    (await c)();
    b();
    (await e)();
    assert.deepEqual(order, ["c", "e"]);
    assert.equal(slots.inUse, 0);
  });

  test("layout - a path's symlinks are reproduced and its target bound once, under no other bind", () => {
    const root = mkdtempSync(join(tmpdir(), "specloop-layout-"));
    try {
      writeFileSync(join(root, "lib.so.1.2"), "");
      symlinkSync("lib.so.1.2", join(root, "lib.so.1"));
      symlinkSync(root, join(root, "alias"));
      const plan = new MountPlan().expose(join(root, "alias", "lib.so.1")).expose(join(root, "lib.so.1.2"));
      assert.deepEqual(plan.mounts(), [
        { kind: "bind", path: join(root, "lib.so.1.2") },
        { kind: "symlink", path: join(root, "alias"), target: root },
        { kind: "symlink", path: join(root, "lib.so.1"), target: "lib.so.1.2" },
      ]);
      const dir = new MountPlan().expose(root).expose(join(root, "lib.so.1"));
      assert.deepEqual(dir.mounts(), [{ kind: "bind", path: root }]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
