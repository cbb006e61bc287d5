// For tests and sibling packages that need the raw names (e.g. to publish a malformed message).

export { connectionOptions } from "./connection.js";
export { ensureConsumer } from "./consumer.js";
export * from "./names.js";
