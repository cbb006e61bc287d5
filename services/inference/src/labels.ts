// Labels a client can vary (the domain tag) become map keys (the acceptance book), heartbeat fields and
// trace fields: bounded here before they become any of those. A label is at most `maxChars` characters of
// printable text (longer ones are refused by validation); the first `maxDistinct` distinct labels are tracked
// under their own name, and every later one folds into "other", so 300 clients inventing domains cannot grow
// the node's status past the bus's message limit.
import { InvalidArgumentError } from "@specloop/runtime";

export const OTHER_LABEL = "other";

export interface LabelBounds {
  maxChars: number;
  maxDistinct: number;
}

export const DEFAULT_DOMAIN_BOUNDS: LabelBounds = { maxChars: 64, maxDistinct: 32 };

export class BoundedLabels {
  private readonly seen = new Set<string>();

  constructor(
    /** The request field the labels come from (named in refusals). */
    private readonly field: string,
    private readonly bounds: LabelBounds = DEFAULT_DOMAIN_BOUNDS,
  ) {}

  /** The label a raw value is tracked under; throws InvalidArgumentError for one too long or not printable. */
  label(raw: string): string {
    if (raw.length > this.bounds.maxChars) {
      throw new InvalidArgumentError(
        this.field,
        `is ${raw.length} characters; at most ${this.bounds.maxChars}`,
      );
    }
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (/[\u0000-\u001f\u007f]/.test(raw)) {
      throw new InvalidArgumentError(this.field, "contains control characters");
    }
    if (this.seen.has(raw)) return raw;
    if (this.seen.size >= this.bounds.maxDistinct) return OTHER_LABEL;
    this.seen.add(raw);
    return raw;
  }

  get distinct(): number {
    return this.seen.size;
  }
}
