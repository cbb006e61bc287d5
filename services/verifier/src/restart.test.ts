// A verifier process killed with SIGKILL mid-tournament, then started again on the same store: the
// candidate it was running dies with it, and the new process marks the tournament failed with the reason
// before it takes calls (nothing stays `judging`), and removes the sandbox directories older versions left.
// The verifier runs from its TypeScript source (tsx), as `npm start` runs it from dist.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { waitFor } from "@specloop/bus/internal";
import {
  type GetTournamentResponse,
  Judge,
  JudgeFailurePolicy,
  RankRequest,
  TournamentState,
  VerifierClient,
} from "@specloop/proto";
import { bearerMetadata } from "@specloop/runtime";
import { freePort, type NatsServer, startNatsServer, type TempDir, tempDir } from "@specloop/testkit";
import { eq } from "drizzle-orm";
import { openVerifierStore, tournaments } from "./db/index.js";
import { INTERRUPTED_ERROR } from "./maintenance.js";
import { SANDBOX_REFUSED } from "./sandbox/test-support.js";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const TOKEN = "restart-test-token-0123456789";
const MARK = `specloop-restart-${process.pid}-${Date.now()}`;

let dir: TempDir;
let nats: NatsServer;
let dbPath: string;
let tokens: string;
let tmp: string;

before(async () => {
  dir = tempDir("specloop-verifier-restart-");
  nats = await startNatsServer();
  dbPath = join(dir.path, "verifier.sqlite");
  tokens = join(dir.path, "tokens.yaml");
  writeFileSync(tokens, `- identity: restart-test\n  roles: [run-code]\n  token: ${TOKEN}\n`);
  tmp = join(dir.path, "tmp");
  mkdirSync(tmp);
});
after(async () => {
  for (const pid of marked()) process.kill(pid, "SIGKILL");
  await nats?.stop();
  dir?.dispose();
});

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

interface Verifier {
  child: ChildProcess;
  client: VerifierClient;
}

async function startVerifier(): Promise<Verifier> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--conditions=source", "--import", "tsx", MAIN], {
    env: {
      ...process.env,
      TMPDIR: tmp,
      SPECLOOP_SERVER__HOST: "127.0.0.1",
      SPECLOOP_SERVER__GRPC_PORT: String(port),
      SPECLOOP_BUS__URLS: nats.url,
      SPECLOOP_STORE__PATH: dbPath,
      SPECLOOP_SERVER__AUTH__TOKENS_FILE: tokens,
      SPECLOOP_INFERENCE__ADDRESS: `127.0.0.1:${await freePort()}`,
      SPECLOOP_LOG__LEVEL: "warn",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  const client = new VerifierClient(`127.0.0.1:${port}`, credentials.createInsecure());
  // Serving once GetTournament answers (NOT_FOUND for an id nobody has).
  await waitFor(
    "the verifier to serve",
    () =>
      new Promise<boolean>((resolve) => {
        if (child.exitCode !== null) throw new Error(`the verifier exited: ${stderr}`);
        client.getTournament(
          { tournamentId: "probe" },
          new Metadata(),
          { deadline: Date.now() + 500 },
          (err) => resolve((err as ServiceError | null)?.code === status.NOT_FOUND),
        );
      }),
    60_000,
  );
  return { child, client };
}

function getTournament(client: VerifierClient, id: string): Promise<GetTournamentResponse> {
  return new Promise((resolve, reject) =>
    client.getTournament({ tournamentId: id }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

describe("verifier restart", () => {
  test("verifier restart - after SIGKILL, the running candidate is gone and the tournament is failed, not judging", {
    skip: SANDBOX_REFUSED,
  }, async () => {
    const first = await startVerifier();
    const question = `restart ${MARK}`;
    const sleeper = [
      "import os, sys",
      `os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(8); print(5)', ${JSON.stringify(MARK)}])`,
    ].join("\n");
    first.client.rank(
      RankRequest.fromPartial({
        question,
        candidates: [sleeper, "print(5)"],
        options: {
          judge: Judge.JUDGE_TESTS,
          seed: "1",
          onJudgeFailure: JudgeFailurePolicy.JUDGE_FAILURE_POLICY_FAIL,
          tests: {
            language: "python",
            cases: [{ name: "five", stdin: "", expectedStdout: "5" }],
            timeLimitMs: 9_000,
            memoryLimitMb: 64,
          },
        },
      }),
      bearerMetadata(TOKEN),
      () => undefined,
    );
    const store = openVerifierStore(dbPath);
    let id = "";
    try {
      await waitFor(
        "the tournament to be judging, its candidate running",
        () => {
          const row = store.db.select().from(tournaments).where(eq(tournaments.question, question)).get();
          id = row?.id ?? "";
          return row?.state === "judging" && marked().length > 0;
        },
        20_000,
      );
    } finally {
      store.close();
    }
    first.child.kill("SIGKILL");
    await once(first.child, "exit");
    first.client.close();
    await waitFor("the candidate to die with the verifier", () => marked().length === 0, 3_000);

    mkdirSync(join(tmp, "specloop-sandbox-left-behind"));
    const second = await startVerifier();
    try {
      const { tournament } = await getTournament(second.client, id);
      assert.equal(tournament?.state, TournamentState.TOURNAMENT_STATE_FAILED);
      assert.equal(tournament?.error, INTERRUPTED_ERROR);
      assert.equal(existsSync(join(tmp, "specloop-sandbox-left-behind")), false);
    } finally {
      second.client.close();
      second.child.kill("SIGTERM");
      await once(second.child, "exit");
    }
  });
});
