export {
  StoreCorruptError,
  StoreError,
  StoreMigrationError,
  StoreOpenError,
} from "./errors.js";
export { DEFAULT_BUSY_TIMEOUT_MS, openStore, type Store, type StoreDb, type StoreOptions } from "./open.js";
