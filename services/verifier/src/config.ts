// The verifier's configuration: the runtime kit's server and log sections plus its own.
// Every key can come from YAML or from SPECLOOP_<PATH> (e.g. SPECLOOP_STORE__PATH).
import { busConfigSchema } from "@specloop/bus";
import { serverConfigSchema, serviceConfigSchema } from "@specloop/runtime";
import { z } from "zod";

export const DEFAULT_VERIFIER_GRPC_PORT = 50053;
export const DEFAULT_VERIFIER_DB = ".data/verifier.sqlite";

export const verifierConfigSchema = serviceConfigSchema.extend({
  bus: busConfigSchema,
  server: serverConfigSchema.extend({
    grpcPort: serverConfigSchema.shape.grpcPort.default(DEFAULT_VERIFIER_GRPC_PORT),
  }),
  store: z.object({
    /** SQLite file holding tournaments and their comparisons. */
    path: z.string().min(1).default(DEFAULT_VERIFIER_DB),
  }),
});
export type VerifierConfig = z.output<typeof verifierConfigSchema>;
