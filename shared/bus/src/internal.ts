// For tests and sibling packages that need the raw names (e.g. to publish a malformed message) and the
// bus's test helpers.
export { connectionOptions } from "./connection.js";
export { ensureConsumer } from "./consumer.js";
export * from "./names.js";
export {
  openTestBus,
  sampleTrace,
  testBusConfig,
  testLogger,
  testTraceLimits,
  waitFor,
} from "./test-support.js";
