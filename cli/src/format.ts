// How values read in tables: fixed decimals, times in UTC without milliseconds, enum names without their
// prefix, in lower case.
import type { Drafter, SpeculatorRole, VersionStatus } from "@specloop/proto";

export function fixed(value: number | undefined, digits = 2): string | undefined {
  return value === undefined || !Number.isFinite(value) ? undefined : value.toFixed(digits);
}

export function time(date: Date | undefined): string | undefined {
  return date === undefined ? undefined : date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** "VERSION_STATUS_LIVE" -> "live", "DRAFTER_DRAFT_MODEL" -> "draft-model". */
export function enumName(value: VersionStatus | Drafter | SpeculatorRole | string, prefix: string): string {
  return String(value).replace(prefix, "").toLowerCase().replaceAll("_", "-");
}

export const statusName = (s: VersionStatus) => enumName(s, "VERSION_STATUS_");
export const drafterName = (d: Drafter) => enumName(d, "DRAFTER_");
export const roleName = (r: SpeculatorRole) => enumName(r, "SPECULATOR_ROLE_");

/** A duration in seconds as people read it: 42s, 5m12s, 3h04m. */
export function age(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
