// The verifier's database: its schema plus the migrations committed beside the package
// (services/verifier/drizzle), found relative to this file so it works from src/ and dist/ alike.
import { fileURLToPath } from "node:url";
import { openStore, type Store, type StoreDb } from "@specloop/store";
import * as schema from "./schema.js";

/** src/db/ and dist/db/ are both two levels below the package root, where drizzle/ lives. */
export const VERIFIER_MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

export type VerifierSchema = typeof schema;
export type VerifierStore = Store<VerifierSchema>;
export type VerifierDb = StoreDb<VerifierSchema>;

/** Opens (creating and migrating as needed) the verifier's SQLite file at `path`. */
export function openVerifierStore(path: string, options: { busyTimeoutMs?: number } = {}): VerifierStore {
  return openStore({ path, migrationsFolder: VERIFIER_MIGRATIONS_FOLDER, schema, ...options });
}

export * from "./schema.js";
