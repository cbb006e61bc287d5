import assert from "node:assert/strict";
import { test } from "node:test";
import * as errors from "./index.js";
import {
  ConfigError,
  ErrorKind,
  InvalidArgumentError,
  isSpecloopError,
  NotFoundError,
  SpecloopError,
  UnavailableError,
} from "./index.js";

test("errors - each class carries its kind, its name and its cause", () => {
  const cause = new Error("disk gone");
  const err = new UnavailableError("nats down", { cause });
  assert.ok(err instanceof SpecloopError && err instanceof Error);
  assert.equal(err.kind, ErrorKind.Unavailable);
  assert.equal(err.name, "UnavailableError");
  assert.equal(err.message, "nats down");
  assert.equal(err.cause, cause);
  assert.equal(new NotFoundError("x").kind, "not_found");
});

test("errors - ConfigError and InvalidArgumentError name the key or field in the message", () => {
  const config = new ConfigError("server.grpcPort", "expected a number");
  assert.equal(config.key, "server.grpcPort");
  assert.equal(config.message, "config server.grpcPort: expected a number");
  assert.equal(config.kind, ErrorKind.InvalidArgument);
  const field = new InvalidArgumentError("max_tokens", "must be positive");
  assert.equal(field.field, "max_tokens");
  assert.equal(field.message, "max_tokens: must be positive");
});

test("errors - isSpecloopError tells the project's errors from anything else", () => {
  assert.equal(isSpecloopError(new NotFoundError("x")), true);
  assert.equal(isSpecloopError(new Error("x")), false);
  assert.equal(isSpecloopError("x"), false);
});

test("errors - every ErrorKind is a distinct snake_case string", () => {
  const kinds = Object.values(ErrorKind);
  assert.equal(new Set(kinds).size, kinds.length);
  for (const k of kinds) assert.match(k, /^[a-z]+(_[a-z]+)*$/);
});

// Pins the public surface: the runtime re-exports it whole, so a change here reaches every service.
test("errors - exports exactly the error kinds and classes", () => {
  assert.deepEqual(Object.keys(errors).sort(), [
    "CancelledError",
    "ConfigError",
    "DataLossError",
    "DeadlineExceededError",
    "ErrorKind",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SpecloopError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "isSpecloopError",
  ]);
});
