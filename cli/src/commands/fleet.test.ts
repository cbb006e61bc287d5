// `specloop status` and `specloop traces tail` as an operator runs them: the CLI process against a real
// inference node process (the bundled model, cpu backend) reporting its heartbeat and publishing traces
// on a real nats-server; then the node is killed and status shows it stale, then gone. With auth on, the
// operator's credential reads the fleet and is refused the traces.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectBus, TRACE_STREAM } from "@specloop/bus";
import { testBusConfig, testLogger } from "@specloop/bus/internal";
import { startSecuredTestBus } from "@specloop/bus/testing";
import { type NatsServer, startNatsServer } from "@specloop/testkit";
import { EXIT } from "../exit-codes.js";
import { type CliRun, runCli, startCli } from "../run-cli.testing.js";
import { type ServiceProcess, spawnService } from "../service-process.testing.js";

let nats: NatsServer;
let node: ServiceProcess;

const cli = (args: string[]) => runCli(args, { env: { SPECLOOP_NATS_URL: nats.url } });

function generate(domain: string): Promise<CliRun> {
  return runCli([
    "generate",
    "--server",
    node.address,
    "--prompt",
    "def add(a, b):\n",
    "--max-tokens",
    "16",
    "--drafter",
    "suffix",
    "--domain",
    domain,
    "--json",
  ]);
}

async function poll<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const got = await check();
    if (got !== undefined) return got;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

interface StatusJson {
  nodes: {
    nodeId: string;
    modelId: string;
    backend: string;
    stale: boolean;
    kvBlocksTotal: number;
    tokensPerSecond: number | null;
    acceptance?: { drafter: string; domain: string; targetPasses: string; acceptedPerPass: number }[];
  }[];
}

before(async () => {
  nats = await startNatsServer();
  node = await spawnService("inference", {
    SPECLOOP_BUS__URLS: nats.url,
    SPECLOOP_NODE__ID: "node-a",
    SPECLOOP_NODE__BACKEND: "cpu",
    SPECLOOP_NODE__CPU_THREADS: "1",
    SPECLOOP_NODE__HEARTBEAT_INTERVAL_MS: "300",
    SPECLOOP_SCHEDULER__KV_BUDGET_MIB: "32",
    // The node provisions the heartbeat bucket: a killed node's entry is gone after this.
    SPECLOOP_BUS__HEARTBEATS__TTL_MS: "8000",
  });
});

after(async () => {
  await node?.stop("SIGKILL");
  await nats?.stop();
});

describe("cli fleet", () => {
  it("status shows the node, its acceptance per drafter and domain, and exits 0", async () => {
    const served = await generate("python");
    assert.equal(served.code, 0, served.stderr);
    const status = await poll("the node's heartbeat with the python request", async () => {
      const r = await cli(["status", "--json"]);
      if (r.code !== 0) return undefined;
      const s = JSON.parse(r.stdout) as StatusJson;
      return s.nodes[0]?.acceptance?.some((a) => a.domain === "python") ? s : undefined;
    });
    assert.equal(status.nodes.length, 1);
    const n = status.nodes[0];
    assert.ok(n);
    assert.deepEqual([n.nodeId, n.modelId, n.backend, n.stale], ["node-a", "tiny-code", "cpu", false]);
    assert.ok(n.kvBlocksTotal > 0);
    assert.ok((n.tokensPerSecond ?? 0) > 0, `tokens/s ${n.tokensPerSecond}`);
    const cell = n.acceptance?.find((a) => a.domain === "python");
    assert.equal(cell?.drafter, "DRAFTER_SUFFIX");
    assert.ok(Number(cell?.targetPasses) > 0 && (cell?.acceptedPerPass ?? 0) >= 1);

    const table = await cli(["status"]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NODE +MODEL +BACKEND +LIVE +CANARY +RUNNING +WAITING +KV +TOK\/S/);
    assert.match(table.stdout, /node-a +tiny-code +cpu .* ok$/m);
    assert.match(table.stdout, /node-a +suffix +- +python +\d+ +\d+ +\d+\.\d\d/);
  });

  it("traces tail prints the last trace, and new ones as they come, per step", async () => {
    const last = await cli(["traces", "tail", "--last", "1", "--count", "1", "--json"]);
    assert.equal(last.code, 0, last.stderr);
    const t = JSON.parse(last.stdout);
    assert.deepEqual([t.nodeId, t.modelId, t.domain, t.drafter], ["node-a", "tiny-code", "python", "suffix"]);
    assert.ok(t.steps.length > 0 && t.outputTokens > 0);
    assert.equal(
      t.steps.reduce((s: number, st: { accepted: number }) => s + st.accepted + 1, 0) / t.steps.length,
      t.acceptedPerPass,
    );

    // A live tail starts at the next message: keep serving requests until it has shown one.
    const tail = startCli(["traces", "tail", "--domain", "c", "--count", "1", "--steps"], {
      env: { SPECLOOP_NATS_URL: nats.url },
    });
    let done = false;
    void tail.done.then(() => {
      done = true;
    });
    for (let i = 0; i < 20 && !done; i++) {
      assert.equal((await generate("c")).code, 0);
      await new Promise((r) => setTimeout(r, 500));
    }
    const r = await tail.done;
    assert.equal(r.code, 0, r.stderr);
    const [line, ...steps] = r.stdout.trim().split("\n");
    assert.match(
      line ?? "",
      /node-a +tiny-code +domain=c +request=\S+ +drafter=suffix +steps=(\d+) proposed=\d+ accepted=\d+/,
    );
    const count = Number(/steps=(\d+)/.exec(line ?? "")?.[1]);
    assert.equal(steps.length, count);
    for (const s of steps) assert.match(s, /^ +@\d+ +suffix +proposed \d+ +accepted \d+ +bonus \d+$/);

    // Ctrl-C ends a tail cleanly: exit 0, nothing on stderr.
    const bus = await connectBus(testBusConfig(nats.url), testLogger);
    try {
      const consumers = async () => (await bus.jsm.consumers.list(TRACE_STREAM).next()).map((c) => c.name);
      const before = new Set(await consumers());
      const forever = startCli(["traces", "tail"], { env: { SPECLOOP_NATS_URL: nats.url } });
      // Signalled once it reads (its consumer exists), as a person presses Ctrl-C after seeing it run.
      await poll("the tail's consumer", async () =>
        (await consumers()).some((name) => !before.has(name)) ? true : undefined,
      );
      forever.child.kill("SIGINT");
      const stopped = await forever.done;
      assert.deepEqual([stopped.code, stopped.stderr], [0, ""]);
    } finally {
      await bus.close();
    }
  });

  it("a killed node is marked stale (exit 1), then drops out when its heartbeat expires", async () => {
    await node.stop("SIGKILL");
    const stale = await poll("the node stale", async () => {
      const r = await cli(["status", "--stale-after", "1500"]);
      return r.code === EXIT.failed && /STALE$/m.test(r.stdout) ? r : undefined;
    });
    assert.match(stale.stdout, /node-a .* STALE$/m);
    assert.match(stale.stderr, /1 of 1 node\(s\) stale \(no heartbeat for 1500 ms\)/);
    const gone = await poll("the node gone", async () => {
      const r = await cli(["status", "--json"]);
      return r.code === EXIT.failed && (JSON.parse(r.stdout) as StatusJson).nodes.length === 0
        ? r
        : undefined;
    });
    assert.match(gone.stderr, /no node is reporting/);
  });

  it("an unreachable NATS is exit 3", async () => {
    const r = await runCli(["status", "--nats", "nats://127.0.0.1:1"]);
    assert.equal(r.code, EXIT.unavailable);
    assert.match(r.stderr, /specloop status: .*cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
  });
});

describe("cli fleet with NATS auth on", () => {
  it("the operator credential reads the fleet but not the traces; no credential is refused (exit 4)", async () => {
    const secured = await startSecuredTestBus();
    try {
      const env = {
        SPECLOOP_NATS_URL: secured.server.url,
        SPECLOOP_NATS_CREDS: secured.credentials.credentialsFile("operator"),
      };
      const status = await runCli(["status"], { env });
      // Read, and empty: no node reports on this server.
      assert.equal(status.code, EXIT.failed, status.stderr);
      assert.match(status.stderr, /no node is reporting/);
      const traces = await runCli(["traces", "tail", "--count", "1"], { env });
      assert.equal(traces.code, EXIT.auth, traces.stderr);
      assert.match(traces.stderr, /NATS refused: .*(Permissions Violation|PERMISSIONS_VIOLATION)/i);
      const none = await runCli(["status", "--nats", secured.server.url]);
      assert.equal(none.code, EXIT.auth, none.stderr);
      assert.match(none.stderr, /NATS refused: .*[Aa]uthorization/);
      const missing = await runCli([
        "status",
        "--nats",
        secured.server.url,
        "--nats-creds",
        "/nonexistent.nk",
      ]);
      assert.equal(missing.code, EXIT.auth);
      assert.match(missing.stderr, /\/nonexistent\.nk/);
    } finally {
      await secured.stop();
    }
  });
});
