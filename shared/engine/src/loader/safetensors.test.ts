import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelFileError } from "../errors.js";
import { f32Tensor, type HostTensor, toFloat32 } from "../tensor.js";
import { encodeSafetensors, parseSafetensors, readSafetensors } from "./safetensors.js";

/** A file from a raw header object and data bytes: how the corrupt cases are built. */
function rawFile(header: unknown, data: Uint8Array, headerText = JSON.stringify(header)): Uint8Array {
  const json = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

function bf16(shape: number[], bits: number[]): HostTensor {
  return { dtype: "bf16", shape, data: new Uint8Array(new Uint16Array(bits).buffer) };
}

function refuses(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => parseSafetensors(bytes, "/models/x/broken.safetensors"),
    (err: unknown) => {
      assert.ok(err instanceof ModelFileError, `not a ModelFileError: ${String(err)}`);
      assert.equal(err.file, "/models/x/broken.safetensors");
      assert.match(err.message, /^\/models\/x\/broken\.safetensors: /);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

const A = f32Tensor([2, 3], [1, 2, 3, 4, 5, 6]);
const B = bf16([3], [0x3f80, 0xc000, 0x0000]); // 1, -2, 0
const F16: HostTensor = {
  dtype: "f16",
  shape: [2],
  data: new Uint8Array(new Uint16Array([0x3c00, 0x4200]).buffer),
};

describe("loader safetensors", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "specloop-safetensors-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("loader safetensors - round-trips f32, bf16 and f16 tensors and metadata", () => {
    const bytes = encodeSafetensors(
      [
        ["a", A],
        ["b", B],
        ["c", F16],
      ],
      { format: "pt" },
    );
    const file = parseSafetensors(bytes, "mem");
    assert.deepEqual(file.metadata, { format: "pt" });
    assert.deepEqual([...file.tensors.keys()], ["a", "b", "c"]);
    assert.deepEqual([...toFloat32(file.tensors.get("a")!)], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...toFloat32(file.tensors.get("b")!)], [1, -2, 0]);
    assert.deepEqual([...toFloat32(file.tensors.get("c")!)], [1, 3]);
    assert.equal(file.tensors.get("b")!.dtype, "bf16");
    assert.deepEqual(file.tensors.get("a")!.shape, [2, 3]);
  });

  test("loader safetensors - tensors are zero-copy views and the data section is 8-byte aligned", () => {
    const bytes = encodeSafetensors(new Map([["a", A]]));
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(headerLen % 8, 0);
    const t = parseSafetensors(bytes, "mem").tensors.get("a")!;
    assert.equal(t.data.buffer, bytes.buffer);
    assert.equal(t.data.byteOffset, 8 + headerLen);
    bytes[8 + headerLen] = 0xff; // a write to the file bytes shows through the view
    assert.equal(t.data[0], 0xff);
  });

  test("loader safetensors - an empty file of tensors and a zero-sized tensor are fine", () => {
    assert.equal(parseSafetensors(encodeSafetensors([]), "mem").tensors.size, 0);
    const empty: HostTensor = { dtype: "f32", shape: [0, 4], data: new Uint8Array(0) };
    const file = parseSafetensors(
      encodeSafetensors([
        ["e", empty],
        ["a", A],
      ]),
      "mem",
    );
    assert.deepEqual(file.tensors.get("e")!.shape, [0, 4]);
    assert.deepEqual([...toFloat32(file.tensors.get("a")!)], [1, 2, 3, 4, 5, 6]);
  });

  test("loader safetensors - the writer refuses data of the wrong length", () => {
    const bad: HostTensor = { dtype: "f32", shape: [3], data: new Uint8Array(8) };
    assert.throws(() => encodeSafetensors([["w", bad]]), /"w" has 8 bytes, f32 \[3\] needs 12/);
  });

  test("loader safetensors - refuses a truncated file, naming the tensor cut off", () => {
    const bytes = encodeSafetensors([
      ["a", A],
      ["b", B],
    ]);
    refuses(
      bytes.subarray(0, bytes.byteLength - 1),
      /tensor "b" ends at data byte 30 .* 29 data bytes: truncated/,
    );
    refuses(bytes.subarray(0, 20), /header length \d+ does not fit in the file \(20 bytes\)/);
    refuses(bytes.subarray(0, 5), /5 bytes: shorter than the 8-byte header length/);
  });

  test("loader safetensors - refuses a header length past the end of the file", () => {
    const bytes = encodeSafetensors([["a", A]]);
    new DataView(bytes.buffer).setBigUint64(0, 1n << 40n, true);
    refuses(bytes, /header length 1099511627776 does not fit in the file/);
  });

  test("loader safetensors - refuses a header that is not JSON", () => {
    refuses(
      rawFile(undefined, new Uint8Array(0), '{"a": {"dtype": "F32",'),
      /header is not valid UTF-8 JSON/,
    );
    refuses(rawFile([1, 2], new Uint8Array(0)), /header is not a JSON object/);
    refuses(rawFile({ __metadata__: { n: 1 } }, new Uint8Array(0)), /__metadata__\.n is not a string/);
  });

  test("loader safetensors - refuses an unsupported dtype, naming the tensor and the dtype", () => {
    const header = { "model.position_ids": { dtype: "I64", shape: [2], data_offsets: [0, 16] } };
    refuses(
      rawFile(header, new Uint8Array(16)),
      /tensor "model\.position_ids": dtype I64 is not supported \(supported: F32, F16, BF16\)/,
    );
  });

  test("loader safetensors - refuses overlapping tensors, naming both", () => {
    const header = {
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    };
    refuses(rawFile(header, new Uint8Array(12)), /tensor "b" \[4, 12\] overlaps tensor "a" \[0, 8\]/);
  });

  test("loader safetensors - refuses offsets that disagree with the shape, gaps and trailing bytes", () => {
    const wrongSpan = { a: { dtype: "BF16", shape: [3], data_offsets: [0, 8] } };
    refuses(
      rawFile(wrongSpan, new Uint8Array(8)),
      /tensor "a": data_offsets span 8 bytes but BF16 \[3\] needs 6/,
    );
    const reversed = { a: { dtype: "F32", shape: [0], data_offsets: [8, 0] } };
    refuses(rawFile(reversed, new Uint8Array(8)), /tensor "a": data_offsets \[8, 0\] end before they begin/);
    const gap = { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } };
    refuses(rawFile(gap, new Uint8Array(8)), /4 unclaimed bytes before tensor "a"/);
    const trailing = { a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } };
    refuses(rawFile(trailing, new Uint8Array(8)), /4 bytes after the last tensor/);
    const badShape = { a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } };
    refuses(
      rawFile(badShape, new Uint8Array(4)),
      /tensor "a": shape \[-1\] is not a list of non-negative integers/,
    );
  });

  test("loader safetensors - readSafetensors reads a file and names its path in errors", async () => {
    const good = join(dir, "good.safetensors");
    await writeFile(good, encodeSafetensors([["a", A]], { k: "v" }));
    const file = await readSafetensors(good);
    assert.deepEqual(file.metadata, { k: "v" });
    assert.deepEqual([...toFloat32(file.tensors.get("a")!)], [1, 2, 3, 4, 5, 6]);

    const broken = join(dir, "broken.safetensors");
    const bytes = encodeSafetensors([["a", A]]);
    await writeFile(broken, bytes.subarray(0, bytes.byteLength - 4));
    await assert.rejects(readSafetensors(broken), (err: unknown) => {
      assert.ok(err instanceof ModelFileError);
      assert.equal(err.file, broken);
      assert.match(err.message, /tensor "a" ends at data byte 24 .*truncated/);
      return true;
    });
  });
});
