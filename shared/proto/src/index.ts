// The wire contract: TypeScript generated from proto/specloop/v1 by ts-proto (see buf.gen.yaml).
// Regenerate with `npm run proto:gen`; never edit src/gen by hand.
import { fileURLToPath } from "node:url";

export { DESCRIPTOR_SET_FILE, fileDescriptorProtos } from "./descriptors.js";
export { DRAFTER_NAMES, type DrafterName, drafterFromProto, drafterToProto } from "./drafters.js";
export * from "./gen/specloop/v1/common.js";
export * from "./gen/specloop/v1/inference.js";
export * from "./gen/specloop/v1/trace.js";
export * from "./gen/specloop/v1/trainer.js";
export * from "./gen/specloop/v1/verifier.js";

/** Directory holding the .proto sources (for server reflection and proto-loader). */
export const PROTO_ROOT: string = fileURLToPath(new URL("../../../proto", import.meta.url));

/** The .proto files of the public API, relative to PROTO_ROOT. */
export const PROTO_FILES: readonly string[] = [
  "specloop/v1/common.proto",
  "specloop/v1/inference.proto",
  "specloop/v1/trace.proto",
  "specloop/v1/trainer.proto",
  "specloop/v1/verifier.proto",
];

/** Fully qualified service names, as health checks and reflection list them. */
export const SERVICE_NAMES = {
  inference: "specloop.v1.Inference",
  trainer: "specloop.v1.SpeculatorTrainer",
  verifier: "specloop.v1.Verifier",
} as const;
