// The store's failures. Each names the database file and keeps the underlying error as `cause`, so a
// service that cannot start says which file and why in one line.
import { ErrorKind, SpecloopError } from "@specloop/runtime";

/** Any failure to open or migrate a store; `path` is the database file as given to openStore. */
export class StoreError extends SpecloopError {
  readonly path: string;
  constructor(kind: ErrorKind, path: string, message: string, options?: ErrorOptions) {
    super(kind, `store ${path}: ${message}`, options);
    this.name = "StoreError";
    this.path = path;
  }
}

/** The file or its folder cannot be created, opened or written (permissions, not a directory, locked). */
export class StoreOpenError extends StoreError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.Unavailable, path, message, options);
    this.name = "StoreOpenError";
  }
}

/** The file exists but is not a SQLite database, or its pages are damaged. */
export class StoreCorruptError extends StoreError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.DataLoss, path, message, options);
    this.name = "StoreCorruptError";
  }
}

/** The migrations folder is missing or unreadable, or a migration failed (and was rolled back). */
export class StoreMigrationError extends StoreError {
  readonly migrationsFolder: string;
  constructor(path: string, migrationsFolder: string, message: string, options?: ErrorOptions) {
    super(ErrorKind.FailedPrecondition, path, message, options);
    this.name = "StoreMigrationError";
    this.migrationsFolder = migrationsFolder;
  }
}
