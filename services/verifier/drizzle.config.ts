// drizzle-kit's view of the verifier's schema. Paths are relative to the repository root, where
// scripts/db-generate.sh runs drizzle-kit; DRIZZLE_OUT lets its --check mode generate into a scratch copy.
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "sqlite",
  schema: "services/verifier/src/db/schema.ts",
  out: process.env.DRIZZLE_OUT ?? "services/verifier/drizzle",
  strict: true,
});
