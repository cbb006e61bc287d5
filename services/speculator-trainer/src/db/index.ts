// The speculator-trainer's database: its schema plus the migrations committed beside the package
// (services/speculator-trainer/drizzle), found relative to this file so it works from src/ and dist/ alike.
import { fileURLToPath } from "node:url";
import { openStore, type Store, type StoreDb } from "@specloop/store";
import * as schema from "./schema.js";

/** src/db/ and dist/db/ are both two levels below the package root, where drizzle/ lives. */
export const TRAINER_MIGRATIONS_FOLDER = fileURLToPath(new URL("../../drizzle", import.meta.url));

export type TrainerSchema = typeof schema;
export type TrainerStore = Store<TrainerSchema>;
export type TrainerDb = StoreDb<TrainerSchema>;

/** Opens (creating and migrating as needed) the trainer's SQLite file at `path`. */
export function openTrainerStore(path: string, options: { busyTimeoutMs?: number } = {}): TrainerStore {
  return openStore({ path, migrationsFolder: TRAINER_MIGRATIONS_FOLDER, schema, ...options });
}

export * from "./schema.js";
