// Tables for people: columns padded to their widest cell, numbers right-aligned, two spaces apart.
export type Cell = string | number | undefined;

function isNumeric(cell: Cell): boolean {
  return typeof cell === "number" || (typeof cell === "string" && /^-?[\d.,]+(%|x|s)?$/.test(cell));
}

/** Renders rows under headers; a cell that is undefined prints as "-". */
export function renderTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => headers.map((_, i) => (r[i] === undefined ? "-" : String(r[i]))));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] as string).length)));
  const right = headers.map(
    (_, i) => rows.length > 0 && rows.every((r) => r[i] === undefined || isNumeric(r[i])),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...text.map(line)].join("\n");
}

/** Key/value lines, keys padded: for one object's fields. */
export function renderFields(fields: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${k.padEnd(width)}  ${v === undefined ? "-" : String(v)}`).join("\n");
}
