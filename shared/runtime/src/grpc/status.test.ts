import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ErrorKind, NotFoundError, SpecloopError } from "../errors.js";
import { createLogger } from "../logging.js";
import { callError, complete, healthCheck, inferenceClient } from "../testdata/clients.js";
import { testInferenceSpec } from "../testdata/inference.js";
import { startGrpcServer } from "./server.js";
import { errorToStatus, INTERNAL_DETAILS, KIND_TO_STATUS } from "./status.js";

const EXPECTED: Record<ErrorKind, status> = {
  invalid_argument: status.INVALID_ARGUMENT,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  failed_precondition: status.FAILED_PRECONDITION,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  unavailable: status.UNAVAILABLE,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  cancelled: status.CANCELLED,
  unimplemented: status.UNIMPLEMENTED,
  data_loss: status.DATA_LOSS,
  internal: status.INTERNAL,
  unauthenticated: status.UNAUTHENTICATED,
  permission_denied: status.PERMISSION_DENIED,
};

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { logger: createLogger("test", "info", sink), lines };
}

describe("grpc status", () => {
  test("grpc status - every error kind has exactly its code", () => {
    for (const kind of Object.values(ErrorKind)) {
      assert.equal(KIND_TO_STATUS[kind], EXPECTED[kind], kind);
      const s = errorToStatus(new SpecloopError(kind, `boom ${kind}`));
      assert.equal(s.code, EXPECTED[kind], kind);
    }
    assert.equal(errorToStatus(new NotFoundError("model x")).details, "model x");
  });

  test("grpc status - unknown errors are INTERNAL with a generic message and a log line", () => {
    const { logger, lines } = captureLogger();
    for (const thrown of [new Error("secret"), "a string", undefined, { code: 5 }]) {
      const s = errorToStatus(thrown, logger);
      assert.equal(s.code, status.INTERNAL);
      assert.equal(s.details, INTERNAL_DETAILS);
    }
    assert.equal(lines.length, 4);
    assert.equal(lines[0]?.level, "error");
    assert.match(JSON.stringify(lines[0]), /secret/);
  });

  test("grpc status - INTERNAL SpecloopErrors do not leak their message", () => {
    const s = errorToStatus(new SpecloopError(ErrorKind.Internal, "db file at /var/x corrupt"));
    assert.equal(s.details, INTERNAL_DETAILS);
  });

  test("grpc status - aborts map to CANCELLED and DEADLINE_EXCEEDED", () => {
    assert.equal(errorToStatus(new DOMException("aborted", "AbortError")).code, status.CANCELLED);
    assert.equal(errorToStatus(new DOMException("timed out", "TimeoutError")).code, status.DEADLINE_EXCEEDED);
  });

  test("grpc status - a live server maps each thrown kind to its code and keeps serving", async () => {
    const { logger, lines } = captureLogger();
    const server = await startGrpcServer({
      host: "127.0.0.1",
      port: 0,
      services: [testInferenceSpec()],
      logger,
    });
    const client = inferenceClient(server.port);
    try {
      for (const kind of Object.values(ErrorKind)) {
        const err = await callError(complete(client, { prompt: `throw:${kind}` }));
        assert.equal(err.code, EXPECTED[kind], kind);
        if (kind !== "internal") assert.equal(err.details, `failed as throw:${kind}`);
      }
      const unknown = await callError(complete(client, { prompt: "throw:unknown" }));
      assert.equal(unknown.code, status.INTERNAL);
      assert.equal(unknown.details, INTERNAL_DETAILS);
      assert.ok(
        lines.some((l) => JSON.stringify(l).includes("secret internal detail")),
        "the real error is logged",
      );
      assert.equal((await callError(complete(client, { prompt: "throw:string" }))).code, status.INTERNAL);

      assert.equal((await complete(client, { prompt: "still here" })).text, "still here");
      assert.equal(await healthCheck(server.port), "SERVING");
    } finally {
      client.close();
      await server.shutdown("test end");
    }
  });
});
