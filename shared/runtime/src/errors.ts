// The project's typed errors live in the leaf package @specloop/errors (the engine throws them without
// loading this kit); the runtime re-exports them, so a service imports everything from @specloop/runtime,
// and maps each ErrorKind to a gRPC status in grpc/status.ts.
export * from "@specloop/errors";
