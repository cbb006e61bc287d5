// Bearer-token auth over real gRPC on loopback: a handler that requires a role answers with the identity
// the token names, and every way of not having that identity gets its status; the config loads secrets
// from inline values, the environment and files, and refuses what would be weak or ambiguous; TLS (and
// mutual TLS) from PEM files made here with openssl.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ChannelCredentials, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { CompleteRequest, CompleteResponse, InferenceClient, type InferenceServer } from "@specloop/proto";
import { loadConfig } from "../config.js";
import { serverConfigSchema, serviceConfigSchema } from "../config-sections.js";
import { ConfigError } from "../errors.js";
import { createLogger } from "../logging.js";
import { testInference, testInferenceSpec } from "../testdata/inference.js";
import {
  bearerMetadata,
  generateToken,
  type Identity,
  MIN_TOKEN_LENGTH,
  serverCredentials,
  TokenAuth,
} from "./auth.js";
import { unary } from "./handlers.js";
import { type GrpcServerHandle, startGrpcServer } from "./server.js";

const logger = createLogger("test", "silent");
const RUNNER = "a-runner-token-0123456789";
const READER = "a-reader-token-0123456789";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "specloop-auth-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The test Inference service whose Complete needs the "run-code" role and answers with the caller. */
function guarded(auth: TokenAuth): InferenceServer {
  return {
    ...testInference(),
    complete: unary(async (_request, ctx) => {
      const who: Identity = auth.require(ctx.metadata, "run-code");
      return CompleteResponse.fromPartial({ text: who.name });
    }),
  };
}

async function serve(auth: TokenAuth, creds = serverCredentials(undefined)): Promise<GrpcServerHandle> {
  return startGrpcServer({
    host: "127.0.0.1",
    port: 0,
    logger,
    credentials: creds,
    services: [{ ...testInferenceSpec(), implementation: guarded(auth) }],
  });
}

function call(client: InferenceClient, metadata: Metadata): Promise<string> {
  return new Promise((resolve, reject) =>
    client.complete(CompleteRequest.fromPartial({ prompt: "x" }), metadata, (err, res) =>
      err ? reject(err) : resolve(res.text),
    ),
  );
}

async function callStatus(client: InferenceClient, metadata: Metadata): Promise<ServiceError> {
  try {
    await call(client, metadata);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where an error was expected");
}

function raw(value: string): Metadata {
  const m = new Metadata();
  m.set("authorization", value);
  return m;
}

describe("grpc auth - bearer tokens", () => {
  const auth = new TokenAuth([
    { identity: "ci", roles: ["run-code"], token: RUNNER },
    { identity: "dashboard", roles: ["read"], token: READER },
  ]);

  test("grpc auth - the token's identity reaches the handler; every other caller gets its status", async () => {
    const server = await serve(auth);
    const client = new InferenceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
    try {
      assert.equal(await call(client, bearerMetadata(RUNNER)), "ci");
      // The scheme is case-insensitive, as HTTP says.
      assert.equal(await call(client, raw(`bearer ${RUNNER}`)), "ci");
      const cases: [Metadata, status, RegExp][] = [
        [new Metadata(), status.UNAUTHENTICATED, /needs "authorization: Bearer <token>"/],
        [raw(`Basic ${RUNNER}`), status.UNAUTHENTICATED, /malformed authorization/],
        [raw("Bearer"), status.UNAUTHENTICATED, /malformed authorization/],
        [bearerMetadata(`${RUNNER}x`), status.UNAUTHENTICATED, /unknown token/],
        [bearerMetadata(RUNNER.slice(0, -1)), status.UNAUTHENTICATED, /unknown token/],
        [bearerMetadata(READER), status.PERMISSION_DENIED, /"dashboard" does not have the role "run-code"/],
      ];
      for (const [metadata, code, details] of cases) {
        const err = await callStatus(client, metadata);
        assert.equal(err.code, code, err.details);
        assert.match(err.details, details);
        // The status never echoes a secret back.
        assert.doesNotMatch(err.details, /token-0123/);
      }
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });

  test("grpc auth - a server with no tokens configured accepts none", async () => {
    const none = new TokenAuth([]);
    assert.equal(none.configured, false);
    assert.throws(() => none.require(bearerMetadata(RUNNER), "run-code"), /no tokens configured/);
  });
});

describe("grpc auth - config", () => {
  test("grpc auth - secrets come inline, from a variable or from a file, and tokensFile adds entries", () => {
    const secret = join(dir, "runner.token");
    writeFileSync(secret, `${RUNNER}\n`);
    const list = join(dir, "tokens.yaml");
    writeFileSync(list, `- identity: ops\n  roles: [admin]\n  tokenEnv: OPS_TOKEN\n`);
    const config = loadConfig(serviceConfigSchema, {
      env: { SPECLOOP_SERVER__AUTH__TOKENS_FILE: list },
    });
    const auth = TokenAuth.fromConfig(
      {
        ...config.server.auth,
        tokens: [
          { identity: "ci", roles: ["run-code"], tokenFile: secret },
          { identity: "dashboard", roles: ["read"], token: READER },
        ],
      },
      { OPS_TOKEN: "  an-ops-token-0123456789 " },
    );
    assert.equal(auth.authenticate(bearerMetadata(RUNNER)).name, "ci");
    assert.equal(auth.authenticate(bearerMetadata(READER)).name, "dashboard");
    assert.deepEqual(auth.require(bearerMetadata("an-ops-token-0123456789"), "admin"), {
      name: "ops",
      roles: ["admin"],
    });
  });

  test("grpc auth - weak, ambiguous, missing or malformed secrets are a ConfigError naming the key", () => {
    const bad: [() => unknown, RegExp][] = [
      [
        () => new TokenAuth([{ identity: "a", roles: [], token: "x".repeat(MIN_TOKEN_LENGTH - 1) }]),
        /server.auth.tokens\[0\]: the token of "a" must have 16/,
      ],
      [
        () =>
          new TokenAuth([
            { identity: "a", roles: [], token: RUNNER },
            { identity: "b", roles: [], token: RUNNER },
          ]),
        /tokens\[1\]: "b" reuses a token/,
      ],
      [
        () => TokenAuth.fromConfig({ tokens: [{ identity: "a", roles: [] }] }),
        /needs exactly one of token, tokenEnv, tokenFile/,
      ],
      [
        () => TokenAuth.fromConfig({ tokens: [{ identity: "a", roles: [], token: RUNNER, tokenEnv: "X" }] }),
        /needs exactly one of/,
      ],
      [
        () => TokenAuth.fromConfig({ tokens: [{ identity: "a", roles: [], tokenEnv: "NOPE" }] }, {}),
        /tokens\[0\].tokenEnv: the variable NOPE is not set/,
      ],
      [
        () => TokenAuth.fromConfig({ tokens: [{ identity: "a", roles: [], tokenFile: join(dir, "none") }] }),
        /tokenFile: cannot read .* \(ENOENT\)/,
      ],
    ];
    const list = join(dir, "bad.yaml");
    writeFileSync(list, "- identity: 'has space'\n  token: whatever-long-enough-token\n");
    bad.push([() => TokenAuth.fromConfig({ tokens: [], tokensFile: list }), /tokensFile: .*\[0.identity\]/]);
    for (const [fn, message] of bad) {
      assert.throws(fn, (err: unknown) => err instanceof ConfigError && message.test(err.message));
    }
  });

  test("grpc auth - the server config has the auth and tls keys, tls optional", () => {
    const plain = loadConfig(serverConfigSchema.pick({ auth: true, tls: true }), { env: {} });
    assert.deepEqual(plain.auth, { tokens: [] });
    assert.equal(plain.tls, undefined);
    const withTls = loadConfig(serviceConfigSchema, {
      env: { SPECLOOP_SERVER__TLS__CERT_FILE: "c.pem", SPECLOOP_SERVER__TLS__KEY_FILE: "k.pem" },
    });
    assert.deepEqual(withTls.server.tls, { certFile: "c.pem", keyFile: "k.pem" });
  });

  test("grpc auth - generated tokens are long, random and accepted", () => {
    const a = generateToken();
    assert.notEqual(a, generateToken());
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(new TokenAuth([{ identity: "x", roles: [], token: a }]).configured, true);
  });
});

describe("grpc auth - tls", () => {
  /** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
  function pki(): Record<"ca" | "cert" | "key" | "clientCert" | "clientKey", string> {
    const p = (name: string): string => join(dir, name);
    const ssl = (...args: string[]): void => {
      execFileSync("openssl", args, { stdio: "ignore" });
    };
    ssl(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=test-ca",
      "-keyout",
      p("ca-key.pem"),
      "-out",
      p("ca.pem"),
    );
    for (const [name, cn, ext] of [
      ["server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"],
      ["client", "ci", "extendedKeyUsage=clientAuth"],
    ] as const) {
      ssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        `/CN=${cn}`,
        "-keyout",
        p(`${name}-key.pem`),
        "-out",
        p(`${name}.csr`),
      );
      writeFileSync(p(`${name}.ext`), `${ext}\n`);
      ssl(
        "x509",
        "-req",
        "-in",
        p(`${name}.csr`),
        "-CA",
        p("ca.pem"),
        "-CAkey",
        p("ca-key.pem"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        p(`${name}.ext`),
        "-out",
        p(`${name}.pem`),
      );
    }
    return {
      ca: p("ca.pem"),
      cert: p("server.pem"),
      key: p("server-key.pem"),
      clientCert: p("client.pem"),
      clientKey: p("client-key.pem"),
    };
  }

  test("grpc auth - TLS from files serves TLS clients only, and a client CA makes it mutual", async () => {
    const files = pki();
    const auth = new TokenAuth([{ identity: "ci", roles: ["run-code"], token: RUNNER }]);
    const ca = readFileSync(files.ca);
    const address = (port: number): string => `127.0.0.1:${port}`;

    const tls = await serve(auth, serverCredentials({ certFile: files.cert, keyFile: files.key }));
    const secure = new InferenceClient(address(tls.port), ChannelCredentials.createSsl(ca));
    const plain = new InferenceClient(address(tls.port), credentials.createInsecure());
    try {
      assert.equal(await call(secure, bearerMetadata(RUNNER)), "ci");
      const refused = await callStatus(plain, bearerMetadata(RUNNER));
      assert.equal(refused.code, status.UNAVAILABLE);
    } finally {
      secure.close();
      plain.close();
      await tls.shutdown("test end");
    }

    const mtls = await serve(
      auth,
      serverCredentials({ certFile: files.cert, keyFile: files.key, clientCaFile: files.ca }),
    );
    const withCert = new InferenceClient(
      address(mtls.port),
      ChannelCredentials.createSsl(ca, readFileSync(files.clientKey), readFileSync(files.clientCert)),
    );
    const noCert = new InferenceClient(address(mtls.port), ChannelCredentials.createSsl(ca));
    try {
      assert.equal(await call(withCert, bearerMetadata(RUNNER)), "ci");
      assert.equal((await callStatus(noCert, bearerMetadata(RUNNER))).code, status.UNAVAILABLE);
    } finally {
      withCert.close();
      noCert.close();
      await mtls.shutdown("test end");
    }
    assert.throws(
      () => serverCredentials({ certFile: join(dir, "none.pem"), keyFile: files.key }),
      /server.tls.certFile: cannot read/,
    );
  });
});
