// Server reflection as the clients that build their schema from it use it (buf curl, grpcurl): ask for
// the file defining a service, then for each file it imports, by name, until the set is closed; link the
// set strictly (every import present, every type resolved); then call a method with messages encoded from
// the linked descriptors alone. buf curl itself does the same last.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  createFileRegistry,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  Client,
  credentials,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { SERVICE_NAMES } from "@specloop/proto";
import { createLogger } from "../logging.js";
import { testInferenceSpec } from "../testdata/inference.js";
import { type GrpcServerHandle, startGrpcServer } from "./server.js";

interface ReflectionResponse {
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}
interface ReflectionRequest {
  file_containing_symbol?: string;
  file_by_filename?: string;
}
interface ReflectionStream {
  write(req: ReflectionRequest): void;
  end(): void;
  on(event: "data", cb: (res: ReflectionResponse) => void): void;
  on(event: "error", cb: (err: Error) => void): void;
}

/** A grpc.reflection.v1 client built from the .proto @grpc/reflection ships, as a third party would. */
function reflectionClient(address: string): Client & { ServerReflectionInfo(): ReflectionStream } {
  const require = createRequire(import.meta.url);
  const protoRoot = join(dirname(require.resolve("@grpc/reflection")), "..", "proto");
  const def = loadPackageDefinition(
    loadSync(join(protoRoot, "grpc/reflection/v1/reflection.proto"), {
      includeDirs: [protoRoot],
      keepCase: true,
      oneofs: true,
    }),
  ) as unknown as { grpc: { reflection: { v1: { ServerReflection: ServiceClientConstructor } } } };
  const Ctor = def.grpc.reflection.v1.ServerReflection;
  return new Ctor(address, credentials.createInsecure()) as unknown as Client & {
    ServerReflectionInfo(): ReflectionStream;
  };
}

/** One reflection request on an open stream; the files the answer carries, decoded. */
function ask(stream: ReflectionStream, queue: ((r: ReflectionResponse) => void)[], req: ReflectionRequest) {
  return new Promise<FileDescriptorProto[]>((resolve, reject) => {
    queue.push((res) => {
      if (res.error_response) {
        reject(new Error(`reflection: ${res.error_response.error_message} (${JSON.stringify(req)})`));
        return;
      }
      const files = res.file_descriptor_response?.file_descriptor_proto ?? [];
      resolve(files.map((b) => fromBinary(FileDescriptorProtoSchema, b)));
    });
    stream.write(req);
  });
}

/**
 * The schema of `symbol` as a reflection client builds it: the file containing it, then every import by
 * file name until nothing is missing, linked strictly. Also returns the names of the files fetched.
 */
async function resolveThroughReflection(address: string, symbol: string) {
  const client = reflectionClient(address);
  const stream = client.ServerReflectionInfo();
  const queue: ((r: ReflectionResponse) => void)[] = [];
  const failed = new Promise<never>((_, reject) => stream.on("error", reject));
  stream.on("data", (res) => queue.shift()?.(res));
  try {
    const known = new Map<string, FileDescriptorProto>();
    const first = await Promise.race([ask(stream, queue, { file_containing_symbol: symbol }), failed]);
    for (const f of first) known.set(f.name, f);
    const root = first[0];
    assert.ok(root, `no file for ${symbol}`);
    const pending = [...root.dependency];
    while (pending.length > 0) {
      const name = pending.pop() as string;
      if (!known.has(name)) {
        const got = await Promise.race([ask(stream, queue, { file_by_filename: name }), failed]);
        for (const f of got) known.set(f.name, f);
      }
      const file = known.get(name);
      assert.ok(file, `the server did not return the imported file ${name}`);
      pending.push(...file.dependency.filter((d) => !known.has(d)));
    }
    // createFileRegistry calls back for each import and fails on one it cannot get or a type it
    // cannot resolve, as Go's protodesc does in buf curl.
    const registry = createFileRegistry(root, (name) => known.get(name));
    return { registry, root, files: [...known.keys()].sort() };
  } finally {
    stream.end();
    client.close();
  }
}

/** A unary call whose messages are encoded and decoded with reflected descriptors only. */
function callWithDescriptors(
  address: string,
  path: string,
  input: DescMessage,
  output: DescMessage,
  request: JsonValue,
): Promise<JsonValue> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      path,
      (json: JsonValue) => Buffer.from(toBinary(input, fromJson(input, json))),
      (bytes: Buffer) => toJson(output, fromBinary(output, bytes)),
      request,
      (err: ServiceError | null, res?: JsonValue) => {
        client.close();
        if (err || res === undefined) reject(err ?? new Error("no response"));
        else resolve(res);
      },
    );
  });
}

describe("grpc reflection", () => {
  let server: GrpcServerHandle;
  let address = "";
  before(async () => {
    server = await startGrpcServer({
      host: "127.0.0.1",
      port: 0,
      services: [testInferenceSpec()],
      logger: createLogger("test", "silent"),
    });
    address = `127.0.0.1:${server.port}`;
  });
  after(() => server.shutdown("test end"));

  test("grpc reflection - a method's full descriptor set resolves by import name and the method is callable", async () => {
    const { registry, root, files } = await resolveThroughReflection(address, SERVICE_NAMES.inference);
    assert.equal(root.name, "specloop/v1/inference.proto");
    assert.ok(root.dependency.includes("specloop/v1/common.proto"), `imports: ${root.dependency}`);
    assert.ok(
      files.includes("google/protobuf/timestamp.proto") && files.includes("specloop/v1/common.proto"),
      `fetched: ${files.join(", ")}`,
    );
    const service = registry.getService(SERVICE_NAMES.inference);
    assert.ok(service, "the linked schema lacks the service");
    const method = service.methods.find((m) => m.name === "Complete");
    assert.ok(method);
    // Types from another file (SamplingParams from common.proto) resolve through the imports.
    assert.equal(
      method.input.fields.find((f) => f.name === "sampling")?.message?.typeName,
      "specloop.v1.SamplingParams",
    );
    const res = await callWithDescriptors(
      address,
      `/${SERVICE_NAMES.inference}/Complete`,
      method.input,
      method.output,
      { prompt: "through reflection", sampling: { temperature: 0 } },
    );
    assert.equal((res as { text?: string }).text, "through reflection");
  });

  test("grpc reflection - grpc.health.v1 resolves too (its map entry linked)", async () => {
    const { registry } = await resolveThroughReflection(address, "grpc.health.v1.Health");
    const list = registry.getService("grpc.health.v1.Health")?.methods.find((m) => m.name === "List");
    assert.ok(list, "Health/List missing");
    assert.equal(list.output.fields[0]?.fieldKind, "map");
  });

  // buf is a devDependency (proto:gen and lint use it): the very client that failed before the fix.
  const buf = fileURLToPath(new URL("../../../../node_modules/.bin/buf", import.meta.url));
  test("grpc reflection - buf curl calls a method through reflection alone", async () => {
    const run = promisify(execFile);
    const { stdout } = await run(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--data",
      JSON.stringify({ prompt: "hello from buf" }),
      `http://${address}/${SERVICE_NAMES.inference}/Complete`,
    ]);
    assert.equal(JSON.parse(stdout).text, "hello from buf");
  });
});
