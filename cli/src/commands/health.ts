// `specloop health --server ADDR`: asks a service's grpc.health.v1 endpoint whether it is serving.
import { credentials, makeGenericClientConstructor, type ServiceError, status } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

export interface HealthOptions {
  server: string;
  /** Service name to ask about; "" asks about the server as a whole. */
  service: string;
  timeoutMs: number;
}

export interface HealthResult {
  server: string;
  service: string;
  /** "SERVING", "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN". */
  status: string;
}

const HealthClient = makeGenericClientConstructor(healthService, "Health");

interface HealthStub {
  Check(
    request: { service: string },
    options: { deadline: Date },
    callback: (err: ServiceError | null, response?: { status: string }) => void,
  ): void;
  close(): void;
}

/** Resolves with the serving status; rejects with the gRPC error (UNAVAILABLE when nothing listens). */
export function checkHealth(options: HealthOptions): Promise<HealthResult> {
  const client = new HealthClient(options.server, credentials.createInsecure()) as unknown as HealthStub;
  const deadline = new Date(Date.now() + options.timeoutMs);
  return new Promise((resolve, reject) => {
    client.Check({ service: options.service }, { deadline }, (err, response) => {
      client.close();
      if (err) reject(err);
      else
        resolve({ server: options.server, service: options.service, status: response?.status ?? "UNKNOWN" });
    });
  });
}

export function describeHealthError(err: unknown, server: string): string {
  const e = err as Partial<ServiceError>;
  if (e.code === status.UNAVAILABLE) return `${server}: unreachable (${e.details ?? "no details"})`;
  if (e.code === status.DEADLINE_EXCEEDED) return `${server}: no answer before the deadline`;
  if (e.code === status.NOT_FOUND) return `${server}: the server does not know that service`;
  return `${server}: ${e.details ?? e.message ?? String(err)}`;
}
