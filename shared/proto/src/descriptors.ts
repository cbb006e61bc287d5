// The compiled descriptors of the API (src/gen/descriptor-set.binpb, written by `npm run proto:gen` with
// buf): every .proto file under its import path ("specloop/v1/trainer.proto"), with its imports listed and
// every type reference fully qualified, plus google/protobuf/timestamp.proto and grpc/health/v1. Server
// reflection serves these, so a client that builds its schema from reflection (buf curl, grpcurl) can
// resolve every type a method uses.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** The FileDescriptorSet file; the same relative path from src/ and dist/. */
export const DESCRIPTOR_SET_FILE: string = fileURLToPath(
  new URL("../src/gen/descriptor-set.binpb", import.meta.url),
);

/** FileDescriptorSet.file is field 1; nothing else is in a set. */
const FILE_FIELD = 1;

let files: readonly Uint8Array[] | undefined;

/** Each file of the set as its serialised FileDescriptorProto, in the set's order (read once). */
export function fileDescriptorProtos(): readonly Uint8Array[] {
  if (files !== undefined) return files;
  const reader = new BinaryReader(readFileSync(DESCRIPTOR_SET_FILE));
  const out: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === FILE_FIELD && wireType === WireType.LengthDelimited) out.push(reader.bytes());
    else reader.skip(wireType);
  }
  files = out;
  return out;
}
