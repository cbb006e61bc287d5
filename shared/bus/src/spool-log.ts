// The spool's files: an append-only log of messages in segment files `<12-digit number>.spool` under one
// directory, read back oldest first. A record is
//   u32 LE length of the rest | u16 LE subject length | subject | u16 LE id length | msg id | data.
// Appends are one write(2) each (to the page cache, no fsync: a process crash loses nothing, a machine
// crash may lose the last records). A record cut short by a crash is found at recovery (its length runs
// past the end of the file) and skipped with a log line. Segments are read whole (they are small) and
// deleted once every record in them was published; a `cursor` file written at close() says how many
// records of the first segment were already published, so a restart does not send them again (a crash
// may: the stream's duplicate window drops what carries a Nats-Msg-Id it has seen).
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@specloop/runtime";
import { BusConflictError } from "./errors.js";

export interface SpoolMessage {
  /** Subject to publish to (a stream's). */
  subject: string;
  data: Uint8Array;
  /** Nats-Msg-Id: the stream drops a second message with the same id within its duplicate window. */
  msgId: string;
}

const SUFFIX = ".spool";
const CURSOR = "cursor";
const LOCK = "LOCK";
const SEGMENT_BYTES = 8 * 1024 ** 2;

/** Bytes a message takes in the log (and in the spool's bound). */
export function recordSize(m: SpoolMessage): number {
  return 4 + 2 + Buffer.byteLength(m.subject) + 2 + Buffer.byteLength(m.msgId) + m.data.length;
}

function encodeRecord(m: SpoolMessage): Buffer {
  const subject = Buffer.from(m.subject);
  const id = Buffer.from(m.msgId);
  const out = Buffer.allocUnsafe(4 + 2 + subject.length + 2 + id.length + m.data.length);
  let at = out.writeUInt32LE(out.length - 4, 0);
  at = out.writeUInt16LE(subject.length, at);
  at += subject.copy(out, at);
  at = out.writeUInt16LE(id.length, at);
  at += id.copy(out, at);
  out.set(m.data, at);
  return out;
}

/** The records of a segment's bytes; `torn` when the last one was cut short. */
function decodeRecords(buf: Buffer): { records: { message: SpoolMessage; size: number }[]; torn: boolean } {
  const records: { message: SpoolMessage; size: number }[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 4 > buf.length) return { records, torn: true };
    const length = buf.readUInt32LE(at);
    const end = at + 4 + length;
    if (end > buf.length || length < 4) return { records, torn: true };
    let p = at + 4;
    const subjectLength = buf.readUInt16LE(p);
    p += 2;
    const subject = buf.toString("utf8", p, p + subjectLength);
    p += subjectLength;
    const idLength = buf.readUInt16LE(p);
    p += 2;
    const msgId = buf.toString("utf8", p, p + idLength);
    p += idLength;
    if (p > end) return { records, torn: true };
    records.push({
      message: { subject, msgId, data: new Uint8Array(buf.subarray(p, end)) },
      size: 4 + length,
    });
    at = end;
  }
  return { records, torn: false };
}

export class SpoolLog {
  /** Segment numbers on disk, oldest first; the last one is written to when `fd` is open. */
  private readonly segments: number[] = [];
  private fd: number | undefined;
  private writeBytes = 0;
  /** The segment being read: its records, and how many of them were published. */
  private reading:
    | { segment: number; records: { message: SpoolMessage; size: number }[]; next: number }
    | undefined;
  private skipFirst = 0;
  /** Bytes of records not yet published. */
  bytes = 0;

  private constructor(
    private readonly dir: string,
    private readonly logger: Logger,
  ) {}

  /** Opens (creating) the directory, takes its lock and counts what an earlier process left there. */
  static open(dir: string, logger: Logger): SpoolLog {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    lock(dir);
    const log = new SpoolLog(dir, logger);
    const numbers = readdirSync(dir)
      .filter((f) => f.endsWith(SUFFIX))
      .map((f) => Number.parseInt(f.slice(0, -SUFFIX.length), 10))
      .filter((n) => Number.isSafeInteger(n))
      .sort((a, b) => a - b);
    log.segments.push(...numbers);
    for (const n of numbers) log.bytes += statSync(log.file(n)).size;
    const cursorFile = join(dir, CURSOR);
    if (existsSync(cursorFile)) {
      const [segment, published] = readFileSync(cursorFile, "utf8").trim().split(" ").map(Number);
      if (segment === numbers[0] && Number.isSafeInteger(published)) log.skipFirst = published ?? 0;
      rmSync(cursorFile, { force: true });
    }
    if (numbers.length > 0)
      logger.info({ dir, segments: numbers.length, bytes: log.bytes }, "spool: resuming");
    return log;
  }

  /** Messages are waiting on disk. */
  get empty(): boolean {
    return this.bytes === 0 && this.segments.length === 0;
  }

  append(m: SpoolMessage): void {
    const record = encodeRecord(m);
    if (this.fd === undefined || this.writeBytes + record.length > SEGMENT_BYTES) this.rotate();
    writeSync(this.fd as number, record);
    this.writeBytes += record.length;
    this.bytes += record.length;
  }

  /** The oldest message not yet published, or undefined when none is left. */
  async peek(): Promise<SpoolMessage | undefined> {
    for (;;) {
      const r = this.reading;
      if (r !== undefined && r.next < r.records.length) return r.records[r.next]?.message;
      if (r !== undefined) this.finishSegment(r.segment);
      const segment = this.segments[0];
      if (segment === undefined) return undefined;
      // A segment is read once no more is written to it.
      if (this.fd !== undefined && segment === this.segments.at(-1)) this.seal();
      const buf = await readFile(this.file(segment));
      const { records, torn } = decodeRecords(buf);
      const whole = records.reduce((n, rec) => n + rec.size, 0);
      if (torn) {
        this.logger.warn(
          { segment, bytes: buf.length - whole },
          "spool: skipped a record cut short by a crash",
        );
        this.bytes -= buf.length - whole;
      }
      const skip = Math.min(this.skipFirst, records.length);
      for (const rec of records.slice(0, skip)) this.bytes -= rec.size;
      this.skipFirst = 0;
      this.reading = { segment, records, next: skip };
    }
  }

  /** Marks the message peek() returned as published. */
  advance(): void {
    const r = this.reading;
    const rec = r?.records[r.next];
    if (r === undefined || rec === undefined) return;
    r.next++;
    this.bytes -= rec.size;
    if (r.next >= r.records.length) this.finishSegment(r.segment);
  }

  /** Closes the file, records how far the first segment was published, and releases the lock. */
  close(): void {
    this.seal();
    const r = this.reading;
    if (r !== undefined && r.next > 0 && r.next < r.records.length) {
      writeFileSync(join(this.dir, CURSOR), `${r.segment} ${r.next}\n`);
    }
    rmSync(join(this.dir, LOCK), { force: true });
    held.delete(this.dir);
  }

  private finishSegment(segment: number): void {
    rmSync(this.file(segment), { force: true });
    if (this.segments[0] === segment) this.segments.shift();
    this.reading = undefined;
  }

  private rotate(): void {
    this.seal();
    const n = (this.segments.at(-1) ?? 0) + 1;
    this.fd = openSync(this.file(n), "a", 0o600);
    this.writeBytes = fstatSync(this.fd).size;
    this.segments.push(n);
  }

  private seal(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private file(n: number): string {
    return join(this.dir, `${String(n).padStart(12, "0")}${SUFFIX}`);
  }
}

/** Directories this process holds. */
const held = new Set<string>();

/** One writer per spool directory: a second one would interleave records. */
function lock(dir: string): void {
  if (held.has(dir)) throw new BusConflictError(`spool: ${dir} is already open in this process`);
  const file = join(dir, LOCK);
  try {
    writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
    held.add(dir);
    return;
  } catch {
    // Held: by a live process, or left behind by one that died.
  }
  const pid = Number.parseInt(readFileSync(file, "utf8"), 10);
  if (Number.isSafeInteger(pid) && pid !== process.pid && alive(pid)) {
    throw new BusConflictError(`spool: ${dir} is in use by process ${pid}`);
  }
  writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
  held.add(dir);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
