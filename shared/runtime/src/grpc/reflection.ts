// Server reflection (grpc.reflection.v1 and v1alpha) over the API's compiled descriptors, so grpcurl,
// buf curl and other tools can list and call the services without a copy of the protos.
//
// The descriptors come from @specloop/proto's descriptor set (compiled by buf at `npm run proto:gen`), not
// from @grpc/proto-loader: proto-loader merges the files of a package into one synthetic file
// ("specloop_v1.proto") with no imports, relative type names and map entries named unlike protoc's, so a
// client that builds its schema from what reflection returns (buf curl, Go's protodesc) could list the
// services but failed to resolve any method ("failed to find service ... in schema").
import type { PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { fileDescriptorProtos } from "@specloop/proto";

export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

let definition: PackageDefinition | undefined;

/**
 * The descriptor set in the shape ReflectionService takes: it reads nothing of a package definition but
 * each entry's `fileDescriptorProtos` (the serialised files), so one entry carries them all.
 */
function packageDefinition(): PackageDefinition {
  definition ??= {
    "specloop.descriptors": {
      format: "Protocol Buffer 3 EnumDescriptorProto",
      type: {},
      fileDescriptorProtos: fileDescriptorProtos().map((f) => Buffer.from(f)),
    },
  };
  return definition;
}

/** A reflection service listing `services` (fully qualified names) and the health service. */
export function createReflectionService(services: readonly string[]): ReflectionService {
  return new ReflectionService(packageDefinition(), { services: [...services, HEALTH_SERVICE_NAME] });
}
