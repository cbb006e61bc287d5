// Hostile candidates against the tests judge, through Rank over real gRPC on loopback, with a real SQLite
// store and a real nats-server. Each attack is bounded (a few forks, tens of MiB, seconds at most) so that a
// sandbox that fails to hold it cannot take the machine down. A hostile candidate prints ESCAPED only when
// its attack worked; the one test case expects ESCAPED, so a contained attack fails its case and ties with
// the harmless second candidate, while an escape wins the comparison.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { type Bus, consumeVerdicts } from "@specloop/bus";
import { testLogger, waitFor } from "@specloop/bus/internal";
import {
  Judge,
  JudgeFailurePolicy,
  type PairwiseVerdict,
  type RankRequest,
  type RankResponse,
  type Tournament,
  TournamentState,
  type VerifierClient,
} from "@specloop/proto";
import { bearerMetadata } from "@specloop/runtime";
import type { TempDir } from "@specloop/testkit";
import { eq } from "drizzle-orm";
import { tournaments, type VerifierStore } from "./db/index.js";
import { SANDBOX_REFUSED } from "./sandbox/test-support.js";
import { startTestVerifier, type TestVerifier } from "./testing.js";

/** Skipped only where the kernel refuses the sandbox's user namespaces (the tests judge then refuses too). */
const skip = SANDBOX_REFUSED;
const ESCAPED = "escaped";
const TOKEN = "hostile-test-token-0123456789";
/** Marks this file's processes on the host, so a test can look for survivors and never touch others'. */
const MARK = `specloop-hostile-${process.pid}-${Date.now()}`;

let t: TestVerifier;
let dir: TempDir;
let bus: Bus;
let store: VerifierStore;
let client: VerifierClient;
let storePath: string;

before(async () => {
  t = await startTestVerifier(
    "hostile",
    { SPECLOOP_TOURNAMENT__MAX_CANDIDATES: "8", SPECLOOP_TESTS__MAX_SANDBOXES: "2" },
    TOKEN,
  );
  ({ dir, bus, store, storePath, client } = t);
});

after(async () => {
  await t?.close();
  killSurvivors();
});

function rank(
  request: Partial<RankRequest>,
  metadata: Metadata = bearerMetadata(TOKEN),
): Promise<RankResponse> {
  return new Promise((resolve, reject) =>
    client.rank({ question: "hostile", candidates: [], ...request } as RankRequest, metadata, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

async function rankError(request: Partial<RankRequest>): Promise<ServiceError> {
  try {
    await rank(request);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("Rank succeeded where an error was expected");
}

interface Attack {
  language?: "python" | "javascript";
  timeLimitMs?: number;
  memoryLimitMb?: number;
}

/** Ranks the hostile code against a harmless candidate; true when the hostile one passed its case. */
async function attack(
  code: string,
  options: Attack = {},
): Promise<{ escaped: boolean; ms: number; t: Tournament }> {
  const language = options.language ?? "python";
  const harmless = language === "python" ? "print('contained')" : "console.log('contained')";
  const started = Date.now();
  const { tournament } = await rank({
    question: `hostile ${MARK}`,
    candidates: [code, harmless],
    options: {
      judge: Judge.JUDGE_TESTS,
      budget: 0,
      seed: "1",
      onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
      tests: {
        language,
        cases: [{ name: "attack", stdin: "", expectedStdout: ESCAPED }],
        timeLimitMs: options.timeLimitMs ?? 4_000,
        memoryLimitMb: options.memoryLimitMb ?? 128,
      },
    },
  });
  const ms = Date.now() - started;
  assert.ok(tournament !== undefined);
  assert.equal(tournament.state, TournamentState.TOURNAMENT_STATE_DONE, tournament.error);
  const [c] = tournament.comparisons;
  assert.ok(c !== undefined);
  const hostileP = c.a === 0 ? c.pA : 1 - c.pA;
  return { escaped: hostileP > 0.5, ms, t: tournament };
}

/** Host processes whose command line carries MARK: what a candidate left behind. */
function survivors(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(MARK)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found.filter((pid) => pid !== process.pid);
}

function killSurvivors(): void {
  for (const pid of survivors()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("verifier hostile - the sandbox holds", { skip }, () => {
  test("verifier hostile - a candidate cannot kill the verifier, and sees only its own processes", async () => {
    const { escaped } = await attack(
      [
        "import os, signal",
        "seen = [p for p in os.listdir('/proc') if p.isdigit()]",
        "for target in (os.getppid(), 1):",
        "    try:",
        "        os.kill(target, signal.SIGKILL)",
        "    except Exception:",
        "        pass",
        `print(${JSON.stringify(ESCAPED)} if len(seen) > 6 else 'contained')`,
      ].join("\n"),
    );
    assert.equal(escaped, false);
    // The verifier is alive and serving.
    await attack("print('fine')");
  });

  test("verifier hostile - host files, the verifier's store and host sockets are out of reach", async () => {
    const before = await attack("print('a row to protect')");
    const socketPath = join(dir.path, "host.sock");
    let connections = 0;
    const unix: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => unix.listen(socketPath, resolve));
    const written = join(dir.path, "written-by-candidate");
    try {
      const { escaped } = await attack(
        [
          "import os, socket",
          "hits = []",
          `for path in ("/etc/passwd", "/etc/hostname", ${JSON.stringify(storePath)}):`,
          "    try:",
          "        open(path, 'rb').read(16); hits.append(path)",
          "    except Exception:",
          "        pass",
          "try:",
          `    open(${JSON.stringify(written)}, 'w').write('x'); hits.append('write')`,
          "except Exception:",
          "    pass",
          "try:",
          "    import sqlite3",
          `    db = sqlite3.connect(${JSON.stringify(storePath)}, timeout=1)`,
          "    db.execute(\"update tournaments set question = 'rewritten'\")",
          "    db.execute(\"insert into tournaments (id, question, candidates, judge, budget, seed, state) values ('forged', 'q', '[]', 'tests', 0, 0, 'judging')\")",
          "    db.commit(); hits.append('sqlite')",
          "except Exception:",
          "    pass",
          "try:",
          "    s = socket.socket(socket.AF_UNIX); s.settimeout(1)",
          `    s.connect(${JSON.stringify(socketPath)}); hits.append('unix')`,
          "except Exception:",
          "    pass",
          `print(${JSON.stringify(ESCAPED)} if hits else 'contained')`,
        ].join("\n"),
      );
      assert.equal(escaped, false);
      assert.equal(existsSync(written), false, "the candidate wrote a host file");
      assert.equal(connections, 0, "the candidate reached a host Unix socket");
      const row = store.db.select().from(tournaments).where(eq(tournaments.id, before.t.tournamentId)).get();
      assert.equal(row?.question, `hostile ${MARK}`);
      assert.equal(store.db.select().from(tournaments).where(eq(tournaments.id, "forged")).get(), undefined);
    } finally {
      unix.close();
    }
  });

  test("verifier hostile - disk is capped: a candidate cannot write 64 MiB", async () => {
    const { escaped } = await attack(
      [
        "n = 0",
        "try:",
        "    with open('big', 'wb') as f:",
        "        for _ in range(64):",
        "            f.write(b'x' * (1 << 20)); f.flush(); n += 1",
        "except OSError:",
        "    pass",
        `print(${JSON.stringify(ESCAPED)} if n >= 64 else 'contained')`,
      ].join("\n"),
    );
    assert.equal(escaped, false);
  });

  test("verifier hostile - nothing outlives the call: setsid children (Python) and detached spawns (JS)", async () => {
    await attack(
      [
        "import os, sys",
        "if os.fork() == 0:",
        "    os.setsid()",
        "    null = os.open('/dev/null', os.O_RDWR)",
        "    for fd in (0, 1, 2):",
        "        os.dup2(null, fd)",
        `    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(4)', ${JSON.stringify(MARK)}])`,
        "print('contained')",
      ].join("\n"),
    );
    await attack(
      [
        "import { spawn } from 'node:child_process';",
        `spawn(process.execPath, ['-e', 'setTimeout(() => {}, 4000)', ${JSON.stringify(MARK)}], { detached: true, stdio: 'ignore' }).unref();`,
        "console.log('contained');",
      ].join("\n"),
      { language: "javascript", memoryLimitMb: 256 },
    );
    await sleep(200);
    const left = survivors();
    killSurvivors();
    assert.deepEqual(left, [], "processes a candidate started outlived the call");
  });

  test("verifier hostile - a child holding stdout open cannot stretch the time limit", async () => {
    const limit = 1_000;
    const { ms } = await attack(
      [
        "import os, time",
        "if os.fork() == 0:",
        "    os.setsid(); time.sleep(3); os._exit(0)",
        "while True:",
        "    pass",
      ].join("\n"),
      { timeLimitMs: limit },
    );
    killSurvivors();
    assert.ok(ms < limit + 1_000, `Rank took ${ms} ms with a ${limit} ms limit`);
  });

  test("verifier hostile - a saboteur's daemon cannot kill the other candidates' runs", async () => {
    const adder = (extra: string) =>
      `# ${MARK}\nimport time\na, b = map(int, input().split())\ntime.sleep(0.3)\nprint(a + b)${extra}`;
    const saboteur = [
      `# ${MARK}`,
      "import os, sys, time, signal",
      "a, b = map(int, sys.stdin.read().split())",
      "if os.fork() == 0:",
      "    os.setsid()",
      "    end = time.time() + 4",
      "    while time.time() < end:",
      "        for p in os.listdir('/proc'):",
      "            if not p.isdigit() or int(p) == os.getpid():",
      "                continue",
      "            try:",
      "                cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')",
      "                script = [c for c in cmd if c.endswith(b'main.py')]",
      `                if script and ${JSON.stringify(MARK)}.encode() in open(script[0], 'rb').read():`,
      "                    os.kill(int(p), signal.SIGKILL)",
      "            except Exception:",
      "                pass",
      "        time.sleep(0.01)",
      "    os._exit(0)",
      // Right on the first case only.
      "print(a + b if a < 10 else 0)",
    ].join("\n");
    const { tournament } = await rank({
      question: "add",
      candidates: [saboteur, adder(""), adder("  # two"), adder("  # three")],
      options: {
        judge: Judge.JUDGE_TESTS,
        budget: 0,
        seed: "3",
        onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
        tests: {
          language: "python",
          cases: [
            { name: "small", stdin: "2 3\n", expectedStdout: "5" },
            { name: "large", stdin: "40 2\n", expectedStdout: "42" },
          ],
          timeLimitMs: 3_000,
          memoryLimitMb: 128,
        },
      },
    });
    killSurvivors();
    assert.equal(tournament?.state, TournamentState.TOURNAMENT_STATE_DONE, tournament?.error);
    assert.notEqual(tournament?.ranking[0], 0, "the saboteur ranked first");
    assert.equal(tournament?.ranking.at(-1), 0, "the saboteur did not rank last");
  });
});

describe("verifier hostile - totals hold across a candidate's whole process tree", () => {
  test("verifier hostile - six forks of 96 MiB do not fit a 128 MiB limit", { skip }, async () => {
    const { escaped } = await attack(
      [
        "import os, time",
        "kids = []",
        "for i in range(6):",
        "    try:",
        "        pid = os.fork()",
        "    except OSError:",
        "        break",
        "    if pid == 0:",
        "        try:",
        "            b = bytearray(96 << 20)",
        "            for j in range(0, len(b), 4096):",
        "                b[j] = 1",
        "            time.sleep(0.5)",
        "            os._exit(0)",
        "        except MemoryError:",
        "            os._exit(1)",
        "    kids.append(pid)",
        "ok = sum(1 for p in kids if os.waitpid(p, 0)[1] == 0)",
        `print(${JSON.stringify(ESCAPED)} if ok == 6 else 'contained')`,
      ].join("\n"),
      { memoryLimitMb: 128 },
    );
    assert.equal(escaped, false);
  });

  test("verifier hostile - processes are capped: 48 forks do not all start", { skip }, async () => {
    const { escaped } = await attack(
      [
        "import os, time",
        "n = 0",
        "for i in range(48):",
        "    try:",
        "        if os.fork() == 0:",
        "            time.sleep(1); os._exit(0)",
        "        n += 1",
        "    except OSError:",
        "        break",
        `print(${JSON.stringify(ESCAPED)} if n >= 48 else 'contained')`,
      ].join("\n"),
    );
    assert.equal(escaped, false);
  });

  test("verifier hostile - a JS candidate cannot hold 512 MiB of buffers under a 96 MiB limit", {
    skip,
  }, async () => {
    const { escaped } = await attack(
      [
        "const held = [];",
        "try { for (let i = 0; i < 16; i++) held.push(Buffer.alloc(32 << 20, 1)); } catch {}",
        `console.log(held.length >= 16 ? ${JSON.stringify(ESCAPED)} : 'contained');`,
      ].join("\n"),
      { language: "javascript", memoryLimitMb: 96 },
    );
    assert.equal(escaped, false);
  });

  test("verifier hostile - sandboxes are capped across the verifier (tests.maxSandboxes = 2)", {
    skip,
  }, async () => {
    const sleeper = (i: number) => `import time\ntime.sleep(0.4)\nprint(${i})`;
    const started = Date.now();
    await rank({
      question: "sleepers",
      candidates: [0, 1, 2, 3, 4, 5].map(sleeper),
      options: {
        judge: Judge.JUDGE_TESTS,
        budget: 0,
        seed: "5",
        onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
        tests: {
          language: "python",
          cases: [{ name: "one", stdin: "", expectedStdout: "0" }],
          timeLimitMs: 2_000,
          memoryLimitMb: 64,
        },
      },
    });
    // Six runs of 400 ms, two at a time, take three rounds.
    const ms = Date.now() - started;
    assert.ok(ms >= 3 * 400, `six 400 ms runs finished in ${ms} ms: more than two ran at once`);
  });

  test("verifier hostile - the number of test cases is bounded", async () => {
    const err = await rankError({
      question: "q",
      candidates: ["print(1)"],
      options: {
        judge: Judge.JUDGE_TESTS,
        budget: 0,
        onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
        tests: {
          language: "python",
          cases: Array.from({ length: 10_000 }, (_, i) => ({
            name: `c${i}`,
            stdin: "",
            expectedStdout: "1",
          })),
          timeLimitMs: 100,
          memoryLimitMb: 64,
        },
      },
    });
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /options.tests.cases: 10000 cases is over this verifier's maximum of \d+/);
  });
});

describe("verifier hostile - what is published is what happened", () => {
  test("verifier hostile - a cancelled call is stored as failed and publishes nothing", {
    skip,
  }, async () => {
    const question = `cancelled ${MARK}`;
    const slow = "import time\ntime.sleep(1.5)\nprint(1)";
    const err = await new Promise<ServiceError>((resolve, reject) =>
      client.rank(
        {
          question,
          candidates: [slow, "print(1)"],
          options: {
            judge: Judge.JUDGE_TESTS,
            budget: 0,
            seed: "1",
            onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
            tests: {
              language: "python",
              cases: [{ name: "one", stdin: "", expectedStdout: "1" }],
              timeLimitMs: 3_000,
              memoryLimitMb: 64,
            },
          },
        } as RankRequest,
        bearerMetadata(TOKEN),
        { deadline: Date.now() + 700 },
        (e) => (e ? resolve(e) : reject(new Error("Rank succeeded past its deadline"))),
      ),
    );
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    await waitFor("the cancelled tournament to settle", () => {
      const row = store.db.select().from(tournaments).where(eq(tournaments.question, question)).get();
      return row !== undefined && row.state !== "judging";
    });
    const row = store.db.select().from(tournaments).where(eq(tournaments.question, question)).get();
    assert.equal(row?.state, "failed");
    assert.match(row?.error ?? "", /deadline|cancel/i);

    // A later tournament's verdicts arrive; none of the cancelled one's ever do.
    const later = await attack("print('after')");
    const seen: PairwiseVerdict[] = [];
    const consumer = await consumeVerdicts(bus, {
      durable: `hostile-cancel-${process.pid}`,
      logger: testLogger,
      handler: (v) => {
        seen.push(v);
        return "ack";
      },
    });
    try {
      await waitFor("the later verdicts", () => seen.some((v) => v.tournamentId === later.t.tournamentId));
    } finally {
      await consumer.stop();
    }
    assert.equal(seen.filter((v) => v.tournamentId === row?.id).length, 0);
  });
});
