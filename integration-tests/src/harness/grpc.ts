// Promise wrappers over ts-proto's callback-style grpc-js clients, for tests:
//   const res = await call<GetNodeStatusResponse>((cb) => client.getNodeStatus({}, cb));
// (The clients' methods are overloaded, so TypeScript cannot infer the response type from a bound method.)
import type { ServiceError } from "@grpc/grpc-js";

export type Callback<Res> = (err: ServiceError | null, res: Res) => void;

export function call<Res>(invoke: (cb: Callback<Res>) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Resolves with the gRPC error a call fails with; rejects if it succeeds. */
export async function callError(invoke: (cb: Callback<unknown>) => unknown): Promise<ServiceError> {
  try {
    await call(invoke);
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error("the call succeeded where an error was expected");
}
