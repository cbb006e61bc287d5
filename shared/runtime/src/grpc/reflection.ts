// Server reflection (grpc.reflection.v1 and v1alpha) over the project's .proto sources, so grpcurl and
// other tools can list and call the services without a copy of the protos.
import { dirname } from "node:path";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { PROTO_FILES, PROTO_ROOT } from "@specloop/proto";
import { protoPath as healthProtoPath } from "grpc-health-check";

export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

let definition: PackageDefinition | undefined;

/** The package definition of the specloop API plus grpc.health.v1, parsed once per process. */
function packageDefinition(): PackageDefinition {
  // health.proto lives at <root>/health/v1/health.proto; load it by that relative name.
  const healthRoot = dirname(dirname(dirname(healthProtoPath)));
  definition ??= loadSync([...PROTO_FILES, "health/v1/health.proto"], {
    includeDirs: [PROTO_ROOT, healthRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return definition;
}

/** A reflection service listing `services` (fully qualified names) and the health service. */
export function createReflectionService(services: readonly string[]): ReflectionService {
  return new ReflectionService(packageDefinition(), { services: [...services, HEALTH_SERVICE_NAME] });
}
