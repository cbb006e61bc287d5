// Helpers for tests of the bus and of the services over it (a server with auth on, per-role configs).
// Kept apart from ./internal, which production code (the CLI) imports: this entry loads the testkit.
export { type SecuredTestBus, startSecuredTestBus } from "./test-auth.js";
