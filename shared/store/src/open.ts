// Opens a service's SQLite database: creates the folder, turns on WAL, foreign keys and a busy timeout,
// and applies the service's committed drizzle migrations before anyone queries it. Every failure comes out
// as one of the StoreError classes naming the file; nothing of better-sqlite3 or drizzle leaks raw.
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";
import { type BetterSQLite3Database, drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { StoreCorruptError, type StoreError, StoreMigrationError, StoreOpenError } from "./errors.js";

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/** drizzle's own bookkeeping table: one row per applied migration. */
const MIGRATIONS_TABLE = "__drizzle_migrations";

export interface StoreOptions<TSchema extends Record<string, unknown>> {
  /** The database file; its parent folders are created. ":memory:" works but is for throwaway use only. */
  path: string;
  /** A drizzle-kit output folder: `NNNN_name.sql` files and `meta/_journal.json`. */
  migrationsFolder: string;
  /** The service's tables (and relations), for the typed query API `db.query.*`. */
  schema: TSchema;
  busyTimeoutMs?: number;
}

export type StoreDb<TSchema extends Record<string, unknown>> = BetterSQLite3Database<TSchema> & {
  $client: Database.Database;
};

export interface Store<TSchema extends Record<string, unknown>> {
  readonly db: StoreDb<TSchema>;
  readonly path: string;
  /** Migrations this open applied; 0 when the file was already up to date. */
  readonly migrationsApplied: number;
  /** Closes the connection (checkpointing the WAL); safe to call twice. */
  close(): void;
}

export function openStore<TSchema extends Record<string, unknown>>(
  options: StoreOptions<TSchema>,
): Store<TSchema> {
  const { path, migrationsFolder, schema } = options;
  const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (path.trim() === "") throw new StoreOpenError(path, "the database path is empty");
  const inMemory = path === ":memory:";
  if (!inMemory) {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (err) {
      throw new StoreOpenError(path, `cannot create its folder: ${describe(err)}`, { cause: err });
    }
  }

  let client: Database.Database;
  try {
    client = new Database(path, { timeout: busyTimeoutMs });
  } catch (err) {
    throw classify(path, "cannot open", err);
  }
  try {
    // The first statement that reads the file: a file that is not SQLite fails here with SQLITE_NOTADB.
    const mode = client.pragma("journal_mode = WAL", { simple: true });
    if (!inMemory && mode !== "wal") {
      throw new StoreOpenError(path, `cannot switch to WAL journal mode (still ${String(mode)})`);
    }
    // Off while migrating (better-sqlite3 turns it on by default): drizzle-kit rebuilds a table by copying
    // it and dropping the old one, and with foreign keys on that DROP would cascade into the children.
    // Inside drizzle's migration transaction the migration's own "PRAGMA foreign_keys=OFF" is a no-op.
    client.pragma("foreign_keys = OFF");
    client.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    // In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the process dying (the
    // trainer killed mid-step), and only a power loss can take back the last few. Each trace the trainer's
    // intake takes is one commit, so FULL (an fsync each) capped a trainer at a few hundred traces a second
    // on a slow disk (bench/results/fleet-sim.md).
    client.pragma("synchronous = NORMAL");
  } catch (err) {
    client.close();
    throw err instanceof StoreOpenError ? err : classify(path, "cannot open", err);
  }

  const db = drizzle({ client, schema });
  let migrationsApplied: number;
  try {
    migrationsApplied = applyMigrations(db, path, migrationsFolder);
    checkForeignKeys(client, path, migrationsFolder);
    client.pragma("foreign_keys = ON");
  } catch (err) {
    client.close();
    throw err;
  }

  return {
    db,
    path,
    migrationsApplied,
    close() {
      if (!client.open) return;
      try {
        // Cheap upkeep SQLite recommends before closing a long-lived connection.
        client.pragma("optimize");
      } finally {
        client.close();
      }
    },
  };
}

/** Applies what the file has not seen yet, all in one transaction (drizzle rolls back on failure). */
function applyMigrations<TSchema extends Record<string, unknown>>(
  db: StoreDb<TSchema>,
  path: string,
  folder: string,
): number {
  const journal = join(folder, "meta", "_journal.json");
  if (!existsSync(journal)) {
    throw new StoreMigrationError(path, folder, `no drizzle migrations journal at ${journal}`);
  }
  try {
    const before = appliedCount(db.$client);
    migrate(db, { migrationsFolder: folder, migrationsTable: MIGRATIONS_TABLE });
    return appliedCount(db.$client) - before;
  } catch (err) {
    const code = sqliteCode(err);
    if (code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT") throw classify(path, "cannot migrate", err);
    throw new StoreMigrationError(path, folder, `migrating from ${folder} failed: ${describe(err)}`, {
      cause: err,
    });
  }
}

/** Foreign keys were off while migrating; refuse to start on rows that now point nowhere. */
function checkForeignKeys(client: Database.Database, path: string, folder: string): void {
  const broken = client.pragma("foreign_key_check") as { table: string; rowid: number; parent: string }[];
  if (broken.length === 0) return;
  const first = broken[0]!;
  throw new StoreMigrationError(
    path,
    folder,
    `${broken.length} row(s) violate foreign keys after migrating, ` +
      `e.g. ${first.table} rowid ${first.rowid} -> ${first.parent}`,
  );
}

function appliedCount(client: Database.Database): number {
  const table = client
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
    .get(MIGRATIONS_TABLE);
  if (table === undefined) return 0;
  const row = client.prepare(`SELECT count(*) AS n FROM "${MIGRATIONS_TABLE}"`).get() as { n: number };
  return row.n;
}

function classify(path: string, doing: string, err: unknown): StoreError {
  const code = sqliteCode(err);
  if (code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT") {
    return new StoreCorruptError(path, `${doing}: not a healthy SQLite database: ${describe(err)}`, {
      cause: err,
    });
  }
  return new StoreOpenError(path, `${doing}: ${describe(err)}`, { cause: err });
}

/** The SQLite result code (SQLITE_BUSY, SQLITE_NOTADB, ...) anywhere along the cause chain. */
function sqliteCode(err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("SQLITE_")) return code;
  }
  return undefined;
}

/**
 * One line for a log: the innermost message (drizzle's DrizzleQueryError says only "Failed query: ..." and
 * keeps the SQLite reason in `cause`), with its code, and the failed statement's start when there is one.
 */
function describe(err: unknown): string {
  let inner: unknown = err;
  let query: string | undefined;
  while (inner instanceof Error && inner.cause !== undefined) {
    const q = (inner as { query?: unknown }).query;
    if (typeof q === "string") query = q;
    inner = inner.cause;
  }
  const message = inner instanceof Error ? inner.message : String(inner);
  const code = (inner as { code?: unknown } | null)?.code;
  const withCode = typeof code === "string" && !message.includes(code) ? `${message} (${code})` : message;
  if (query === undefined) return withCode;
  const statement = query.replace(/\s+/g, " ").trim();
  return `${withCode}; in: ${statement.length > 120 ? `${statement.slice(0, 120)}...` : statement}`;
}
