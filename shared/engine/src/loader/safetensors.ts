// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON mapping tensor names to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" string map), then the data section. Offsets are relative to the data section.
//
// Parsing is strict, as the reference Rust implementation is: the data section must be exactly the
// tensors back to back, so a truncated download, a corrupt header or overlapping tensors are refused
// by name here instead of surfacing later as garbage logits.
import { open } from "node:fs/promises";
import { ModelFileError } from "../errors.js";
import { DTYPE_BYTES, type DType, type HostTensor, numel, SAFETENSORS_DTYPES } from "../tensor.js";

export interface SafetensorsFile {
  /** In header order; each tensor's data is a zero-copy view into the file's bytes. */
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

const METADATA_KEY = "__metadata__";
/** The reference implementation's cap: a larger header is a corrupt length, not a real header. */
const MAX_HEADER_BYTES = 100_000_000;
/** Chunk size for reading a file: fs.readFile refuses files over 2 GiB, and shards are often larger. */
const READ_CHUNK_BYTES = 64 * 1024 * 1024;

const DTYPE_NAMES: Readonly<Record<DType, string>> = Object.fromEntries(
  Object.entries(SAFETENSORS_DTYPES).map(([name, dtype]) => [dtype, name]),
) as Record<DType, string>;

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

const isNonNegInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function parseEntry(file: string, name: string, raw: unknown): Entry {
  const bad = (what: string) => new ModelFileError(file, `tensor "${name}": ${what}`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw bad("header entry is not an object");
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== "string") throw bad("dtype missing");
  const ours = SAFETENSORS_DTYPES[dtype];
  if (ours === undefined) {
    throw bad(`dtype ${dtype} is not supported (supported: ${Object.keys(SAFETENSORS_DTYPES).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
    throw bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
    throw bad(`data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`);
  const want = numel(shape) * DTYPE_BYTES[ours];
  if (end - begin !== want) {
    throw bad(`data_offsets span ${end - begin} bytes but ${dtype} [${shape.join(", ")}] needs ${want}`);
  }
  return { name, dtype: ours, shape, begin, end };
}

function parseMetadata(file: string, raw: unknown): Record<string, string> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelFileError(file, `${METADATA_KEY} is not an object of strings`);
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== "string") throw new ModelFileError(file, `${METADATA_KEY}.${k} is not a string`);
  }
  return { ...(raw as Record<string, string>) };
}

/**
 * Parses the bytes of one safetensors file. `file` names it in errors. The returned tensors are views
 * into `bytes` (no copy), so they keep it alive.
 */
export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new ModelFileError(file, `${bytes.byteLength} bytes: shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(bytes.byteLength - 8) || headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new ModelFileError(
      file,
      `header length ${headerLen} does not fit in the file (${bytes.byteLength} bytes); truncated or not safetensors`,
    );
  }
  const dataStart = 8 + Number(headerLen);
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart));
    header = JSON.parse(text);
  } catch (err) {
    throw new ModelFileError(file, `header is not valid UTF-8 JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new ModelFileError(file, "header is not a JSON object");
  }

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) metadata = parseMetadata(file, raw);
    else entries.push(parseEntry(file, name, raw));
  }

  // Walk the tensors in data order: each must start where the previous one ended.
  const dataLen = bytes.byteLength - dataStart;
  const ordered = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: Entry | undefined;
  for (const e of ordered) {
    if (e.begin < at && prev !== undefined) {
      throw new ModelFileError(
        file,
        `tensor "${e.name}" [${e.begin}, ${e.end}] overlaps tensor "${prev.name}" [${prev.begin}, ${prev.end}]`,
      );
    }
    if (e.begin > at) {
      throw new ModelFileError(file, `${e.begin - at} unclaimed bytes before tensor "${e.name}"`);
    }
    if (e.end > dataLen) {
      throw new ModelFileError(
        file,
        `tensor "${e.name}" ends at data byte ${e.end} but the file holds ${dataLen} data bytes: truncated`,
      );
    }
    at = e.end;
    prev = e;
  }
  if (at !== dataLen) {
    throw new ModelFileError(file, `${dataLen - at} bytes after the last tensor: not a safetensors file`);
  }

  const tensors = new Map<string, HostTensor>();
  for (const e of entries) {
    const data = new Uint8Array(bytes.buffer, bytes.byteOffset + dataStart + e.begin, e.end - e.begin);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/** Reads a whole file into one fresh Uint8Array, in chunks (fs.readFile stops at 2 GiB). */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  const handle = await open(path, "r");
  try {
    const { size } = await handle.stat();
    const bytes = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const { bytesRead } = await handle.read(bytes, at, Math.min(READ_CHUNK_BYTES, size - at), at);
      if (bytesRead === 0) break; // the file shrank under us; parsing reports the truncation
      at += bytesRead;
    }
    return at === size ? bytes : bytes.subarray(0, at);
  } finally {
    await handle.close();
  }
}

/** Reads and parses one safetensors file; errors name `path`. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readFileBytes(path), path);
}

/**
 * Serialises tensors (in iteration order) and string metadata as a safetensors file. The header is
 * padded with spaces to a multiple of 8 bytes, as the reference writer does, so that the data section
 * stays 8-byte aligned for readers that view it as typed arrays.
 */
export function encodeSafetensors(
  tensors: Iterable<readonly [string, HostTensor]> | ReadonlyMap<string, HostTensor>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header[METADATA_KEY] = { ...metadata };
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === METADATA_KEY) throw new RangeError(`encodeSafetensors: "${METADATA_KEY}" is reserved`);
    if (name in header) throw new RangeError(`encodeSafetensors: duplicate tensor "${name}"`);
    const want = numel(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== want) {
      throw new RangeError(
        `encodeSafetensors: "${name}" has ${t.data.byteLength} bytes, ${t.dtype} [${t.shape}] needs ${want}`,
      );
    }
    header[name] = {
      dtype: DTYPE_NAMES[t.dtype],
      shape: [...t.shape],
      data_offsets: [offset, offset + want],
    };
    parts.push(t.data);
    offset += want;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLen);
  let at = 8 + headerLen;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
