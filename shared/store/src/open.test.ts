import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ErrorKind } from "@specloop/runtime";
import Database from "better-sqlite3";
import { StoreCorruptError, StoreMigrationError, StoreOpenError } from "./errors.js";
import { openStore } from "./open.js";

interface Migration {
  tag: string;
  when: number;
  sql: string[];
}

const CREATE_ITEMS: Migration = {
  tag: "0000_items",
  when: 1_700_000_000_000,
  sql: ["CREATE TABLE `items` (`id` integer PRIMARY KEY NOT NULL, `name` text NOT NULL);"],
};
const CREATE_TAGS: Migration = {
  tag: "0001_tags",
  when: 1_700_000_001_000,
  sql: [
    "CREATE TABLE `tags` (`item_id` integer NOT NULL REFERENCES `items`(`id`), `tag` text NOT NULL);",
    "CREATE INDEX `tags_item_idx` ON `tags` (`item_id`);",
  ],
};
const ADD_COLOUR: Migration = {
  tag: "0002_colour",
  when: 1_700_000_002_000,
  sql: ["ALTER TABLE `items` ADD `colour` text DEFAULT 'red' NOT NULL;"],
};

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), "specloop-store-"));
});
after(() => rmSync(root, { recursive: true, force: true }));

/** Writes a drizzle-kit style migrations folder: one .sql per migration and meta/_journal.json. */
function migrationsFolder(name: string, migrations: Migration[]): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "meta"), { recursive: true });
  for (const m of migrations)
    writeFileSync(join(dir, `${m.tag}.sql`), m.sql.join("\n--> statement-breakpoint\n"));
  const entries = migrations.map((m, idx) => ({
    idx,
    version: "6",
    when: m.when,
    tag: m.tag,
    breakpoints: true,
  }));
  writeFileSync(
    join(dir, "meta", "_journal.json"),
    JSON.stringify({ version: "7", dialect: "sqlite", entries }),
  );
  return dir;
}

function tables(path: string): string[] {
  const raw = new Database(path, { readonly: true });
  try {
    const rows = raw
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ESCAPE '\\' ORDER BY name",
      )
      .all();
    return rows.map((r) => (r as { name: string }).name);
  } finally {
    raw.close();
  }
}

describe("store - openStore", () => {
  test("store - migrates a fresh file in a new folder, with WAL, foreign keys and a busy timeout", () => {
    const path = join(root, "fresh", "nested", "db.sqlite");
    const store = openStore({
      path,
      migrationsFolder: migrationsFolder("m-fresh", [CREATE_ITEMS, CREATE_TAGS]),
      schema: {},
    });
    try {
      assert.equal(store.migrationsApplied, 2);
      assert.equal(store.db.$client.pragma("journal_mode", { simple: true }), "wal");
      assert.equal(store.db.$client.pragma("foreign_keys", { simple: true }), 1);
      assert.equal(store.db.$client.pragma("busy_timeout", { simple: true }), 5000);
      store.db.$client.prepare("INSERT INTO items (id, name) VALUES (1, 'a')").run();
      assert.throws(
        () => store.db.$client.prepare("INSERT INTO tags (item_id, tag) VALUES (99, 'x')").run(),
        /FOREIGN KEY constraint failed/,
      );
    } finally {
      store.close();
      store.close();
    }
    assert.deepEqual(tables(path), ["__drizzle_migrations", "items", "tags"]);
  });

  test("store - reopening applies nothing twice and keeps the data", () => {
    const path = join(root, "reopen.sqlite");
    const folder = migrationsFolder("m-reopen", [CREATE_ITEMS, CREATE_TAGS]);
    const first = openStore({ path, migrationsFolder: folder, schema: {} });
    first.db.$client.prepare("INSERT INTO items (id, name) VALUES (1, 'kept')").run();
    first.close();

    const second = openStore({ path, migrationsFolder: folder, schema: {} });
    try {
      assert.equal(second.migrationsApplied, 0);
      assert.deepEqual(second.db.$client.prepare("SELECT name FROM items").all(), [{ name: "kept" }]);
      assert.deepEqual(second.db.$client.prepare("SELECT count(*) AS n FROM __drizzle_migrations").get(), {
        n: 2,
      });
    } finally {
      second.close();
    }
  });

  test("store - an older file gets only the newer migrations", () => {
    const path = join(root, "upgrade.sqlite");
    const v1 = openStore({ path, migrationsFolder: migrationsFolder("m-v1", [CREATE_ITEMS]), schema: {} });
    assert.equal(v1.migrationsApplied, 1);
    v1.db.$client.prepare("INSERT INTO items (id, name) VALUES (7, 'old')").run();
    v1.close();

    const folder = migrationsFolder("m-v2", [CREATE_ITEMS, CREATE_TAGS, ADD_COLOUR]);
    const v2 = openStore({ path, migrationsFolder: folder, schema: {} });
    try {
      assert.equal(v2.migrationsApplied, 2);
      assert.deepEqual(v2.db.$client.prepare("SELECT id, name, colour FROM items").all(), [
        { id: 7, name: "old", colour: "red" },
      ]);
    } finally {
      v2.close();
    }
  });

  test("store - a migration that rebuilds a parent table keeps the child rows", () => {
    const path = join(root, "rebuild.sqlite");
    const v1 = openStore({
      path,
      migrationsFolder: migrationsFolder("m-rebuild-1", [CREATE_ITEMS, CREATE_TAGS]),
      schema: {},
    });
    v1.db.$client.prepare("INSERT INTO items (id, name) VALUES (1, 'a')").run();
    v1.db.$client.prepare("INSERT INTO tags (item_id, tag) VALUES (1, 'x')").run();
    v1.close();
    // The shape drizzle-kit writes when SQLite cannot ALTER a column in place.
    const rebuild: Migration = {
      tag: "0002_rebuild_items",
      when: ADD_COLOUR.when,
      sql: [
        "PRAGMA foreign_keys=OFF;",
        "CREATE TABLE `__new_items` (`id` integer PRIMARY KEY NOT NULL, `name` text NOT NULL UNIQUE);",
        "INSERT INTO `__new_items`(`id`, `name`) SELECT `id`, `name` FROM `items`;",
        "DROP TABLE `items`;",
        "ALTER TABLE `__new_items` RENAME TO `items`;",
        "PRAGMA foreign_keys=ON;",
      ],
    };
    const v2 = openStore({
      path,
      migrationsFolder: migrationsFolder("m-rebuild-2", [CREATE_ITEMS, CREATE_TAGS, rebuild]),
      schema: {},
    });
    try {
      assert.equal(v2.migrationsApplied, 1);
      assert.deepEqual(v2.db.$client.prepare("SELECT item_id, tag FROM tags").all(), [
        { item_id: 1, tag: "x" },
      ]);
      assert.equal(v2.db.$client.pragma("foreign_keys", { simple: true }), 1);
    } finally {
      v2.close();
    }
  });

  test("store - a migration that leaves dangling references fails naming the table", () => {
    const path = join(root, "dangling.sqlite");
    const orphan: Migration = {
      tag: "0002_orphan",
      when: ADD_COLOUR.when,
      sql: ["INSERT INTO tags (item_id, tag) VALUES (42, 'x');"],
    };
    assert.throws(
      () =>
        openStore({
          path,
          migrationsFolder: migrationsFolder("m-orphan", [CREATE_ITEMS, CREATE_TAGS, orphan]),
          schema: {},
        }),
      (err: unknown) =>
        err instanceof StoreMigrationError && /violate foreign keys.*tags rowid 1 -> items/.test(err.message),
    );
  });

  test("store - a failing migration is rolled back whole and names the file and the reason", () => {
    const path = join(root, "broken-migration.sqlite");
    const broken: Migration = {
      tag: "0001_broken",
      when: CREATE_TAGS.when,
      sql: ["CREATE TABLE `items` (`id` integer);"],
    };
    const folder = migrationsFolder("m-broken", [CREATE_ITEMS, broken]);
    assert.throws(
      () => openStore({ path, migrationsFolder: folder, schema: {} }),
      (err: unknown) => {
        assert.ok(err instanceof StoreMigrationError);
        assert.equal(err.kind, ErrorKind.FailedPrecondition);
        assert.equal(err.path, path);
        assert.match(err.message, new RegExp(`^store ${path}: `));
        assert.match(err.message, /table `items` already exists/);
        return true;
      },
    );
    // Nothing of the run stays: not even the first, good migration.
    assert.deepEqual(tables(path), ["__drizzle_migrations"]);
  });

  test("store - a path under a regular file fails with an open error naming the path", () => {
    const blocker = join(root, "not-a-folder");
    writeFileSync(blocker, "plain file");
    const path = join(blocker, "db.sqlite");
    assert.throws(
      () =>
        openStore({ path, migrationsFolder: migrationsFolder("m-unwritable", [CREATE_ITEMS]), schema: {} }),
      (err: unknown) => {
        assert.ok(err instanceof StoreOpenError);
        assert.equal(err.kind, ErrorKind.Unavailable);
        assert.ok(err.message.includes(path), err.message);
        assert.ok(err.cause instanceof Error);
        return true;
      },
    );
  });

  test("store - a folder given as the database fails with an open error naming it", () => {
    const path = join(root, "a-folder.sqlite");
    mkdirSync(path);
    assert.throws(
      () => openStore({ path, migrationsFolder: migrationsFolder("m-folder", [CREATE_ITEMS]), schema: {} }),
      (err: unknown) => err instanceof StoreOpenError && err.message.includes(path),
    );
  });

  test("store - a file that is not SQLite fails as corrupt, naming the path, and is left as it was", () => {
    const path = join(root, "corrupt.sqlite");
    const garbage = Buffer.alloc(8192, 0x5a);
    writeFileSync(path, garbage);
    assert.throws(
      () => openStore({ path, migrationsFolder: migrationsFolder("m-corrupt", [CREATE_ITEMS]), schema: {} }),
      (err: unknown) => {
        assert.ok(err instanceof StoreCorruptError);
        assert.equal(err.kind, ErrorKind.DataLoss);
        assert.match(err.message, new RegExp(`^store ${path}: .*SQLITE_NOTADB`));
        return true;
      },
    );
  });

  test("store - a missing migrations folder fails naming the folder", () => {
    const path = join(root, "no-migrations.sqlite");
    const folder = join(root, "does-not-exist");
    assert.throws(
      () => openStore({ path, migrationsFolder: folder, schema: {} }),
      (err: unknown) =>
        err instanceof StoreMigrationError && err.migrationsFolder === folder && err.message.includes(folder),
    );
  });
});
