// Promise-shaped gRPC clients for tests: the generated Inference client, grpc.health.v1 and server
// reflection, the last two built from their .proto files as any third-party client would.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  type CallOptions,
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import {
  CompleteRequest,
  type CompleteResponse,
  GenerateRequest,
  type GenerateResponse,
  InferenceClient,
} from "@specloop/proto";
import { protoPath as healthProtoPath } from "grpc-health-check";

export function inferenceClient(port: number): InferenceClient {
  return new InferenceClient(`127.0.0.1:${port}`, credentials.createInsecure());
}

export function complete(
  client: InferenceClient,
  request: Partial<CompleteRequest>,
  options: Partial<CallOptions> = {},
): Promise<CompleteResponse> {
  return new Promise((resolve, reject) => {
    client.complete(CompleteRequest.fromPartial(request), new Metadata(), options, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

export async function generate(
  client: InferenceClient,
  request: Partial<GenerateRequest>,
): Promise<GenerateResponse[]> {
  const out: GenerateResponse[] = [];
  for await (const chunk of client.generate(GenerateRequest.fromPartial(request)))
    out.push(chunk as GenerateResponse);
  return out;
}

/** The call's error, or a failure if it succeeded. */
export async function callError(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("expected the call to fail");
}

function serviceConstructor(protoFile: string, includeDir: string, path: string[]): ServiceClientConstructor {
  const def = loadPackageDefinition(
    loadSync(protoFile, { includeDirs: [includeDir], keepCase: true, enums: String }),
  );
  let node: unknown = def;
  for (const key of path) node = (node as Record<string, unknown>)[key];
  return node as ServiceClientConstructor;
}

type Callback<T> = (err: ServiceError | null, res: T) => void;

export async function healthCheck(port: number, service = ""): Promise<string> {
  const Health = serviceConstructor(healthProtoPath, dirname(healthProtoPath), [
    "grpc",
    "health",
    "v1",
    "Health",
  ]);
  const client = new Health(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as Client & {
    Check(req: { service: string }, cb: Callback<{ status: string }>): void;
  };
  try {
    return await new Promise((resolve, reject) => {
      client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res.status)));
    });
  } finally {
    client.close();
  }
}

interface ReflectionStream {
  write(req: { list_services: string }): void;
  end(): void;
  on(event: "data", cb: (res: { list_services_response?: { service: { name: string }[] } }) => void): void;
  on(event: "error", cb: (err: Error) => void): void;
}

/** Lists services through grpc.reflection.v1 ServerReflectionInfo. */
export async function reflectionListServices(port: number): Promise<string[]> {
  const require = createRequire(import.meta.url);
  const protoRoot = join(dirname(require.resolve("@grpc/reflection")), "..", "proto");
  const Reflection = serviceConstructor(join(protoRoot, "grpc/reflection/v1/reflection.proto"), protoRoot, [
    "grpc",
    "reflection",
    "v1",
    "ServerReflection",
  ]);
  const client = new Reflection(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as Client & {
    ServerReflectionInfo(): ReflectionStream;
  };
  try {
    return await new Promise((resolve, reject) => {
      const stream = client.ServerReflectionInfo();
      stream.on("data", (res) => {
        resolve((res.list_services_response?.service ?? []).map((s) => s.name));
        stream.end();
      });
      stream.on("error", reject);
      stream.write({ list_services: "" });
    });
  } finally {
    client.close();
  }
}
