// Values that arrive on the wire in a wider type than the code can hold. A 64-bit seed is carried as a
// decimal string (proto `jstype = JS_STRING`), so a value past 2^53 - 1 decodes fine and is refused here,
// naming the field, instead of failing deserialisation with INTERNAL.
import { InvalidArgumentError } from "./errors.js";

/** A uint64 field given as a decimal string, as a safe integer; undefined stays undefined. */
export function safeUint64(field: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]{1,20}$/.test(value)) {
    throw new InvalidArgumentError(field, `must be an unsigned integer, got "${value.slice(0, 32)}"`);
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(
      field,
      `must be at most ${Number.MAX_SAFE_INTEGER} (2^53 - 1), got ${value}`,
    );
  }
  return n;
}
