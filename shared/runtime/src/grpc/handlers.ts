// Typed handler adapters: a service implements its ts-proto server interface with plain async
// functions, and every error goes through grpc/status.ts.
//   const impl: InferenceServer = {
//     getNodeStatus: unary(async (request, ctx) => ({ status: ... })),
//     generate: serverStream(async function* (request, ctx) { yield { ... }; }),
//     ...
//   };
// The adapters are bound to the server's logger, call tracker and metrics when the service is added
// (bindImplementation); called any other way they run with a silent logger and no metrics.
import { once } from "node:events";
import type {
  handleServerStreamingCall,
  handleUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { silentLogger } from "../logging.js";
import {
  type CallContext,
  CallTracker,
  type CallType,
  type HandlerRuntime,
  openCall,
  SHUTTING_DOWN,
} from "./calls.js";
import { type GrpcStatus, Status } from "./status.js";

export type UnaryHandler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;
export type ServerStreamHandler<Req, Res> = (request: Req, ctx: CallContext) => AsyncIterable<Res>;

const ADAPTER = Symbol("specloop.grpc.adapter");

interface Adapter {
  type: CallType;
  bind(rt: HandlerRuntime, method: string): UntypedHandleCall;
}

type Adapted = { [ADAPTER]?: Adapter };

function standaloneRuntime(): HandlerRuntime {
  return { logger: silentLogger(), calls: new CallTracker() };
}

/** Adapts `async (request, ctx) => response` to a grpc-js unary handler. */
export function unary<Req, Res>(fn: UnaryHandler<Req, Res>): handleUnaryCall<Req, Res> {
  const bind = (rt: HandlerRuntime, method: string): handleUnaryCall<Req, Res> => {
    return (call, callback) => {
      const scope = openCall(rt, method, "unary", call);
      if (scope === undefined) {
        callback({ code: Status.UNAVAILABLE, details: SHUTTING_DOWN });
        return;
      }
      let settled = false;
      const settle = (status: GrpcStatus | null, response?: Res): void => {
        if (settled) return;
        settled = true;
        scope.close(status?.code ?? Status.OK);
        if (status === null) callback(null, response);
        else callback(status);
      };
      // Aborts answer at once: the client must not wait for a handler that ignores its signal.
      scope.onAbort((status) => settle(status));
      Promise.resolve()
        .then(() => fn(call.request, scope.ctx))
        .then(
          (response) => settle(null, response),
          (err: unknown) => settle(scope.fail(err)),
        );
    };
  };
  const handler = bind(standaloneRuntime(), "/unbound/unary");
  (handler as Adapted)[ADAPTER] = { type: "unary", bind: bind as Adapter["bind"] };
  return handler;
}

/** Adapts `async function* (request, ctx) { yield response; }` to a grpc-js server-streaming handler. */
export function serverStream<Req, Res>(
  fn: ServerStreamHandler<Req, Res>,
): handleServerStreamingCall<Req, Res> {
  const bind = (rt: HandlerRuntime, method: string): handleServerStreamingCall<Req, Res> => {
    return (call) => {
      const scope = openCall(rt, method, "server_stream", call);
      if (scope === undefined) {
        call.emit("error", { code: Status.UNAVAILABLE, details: SHUTTING_DOWN });
        return;
      }
      let settled = false;
      const settle = (status: GrpcStatus | null): void => {
        if (settled) return;
        settled = true;
        scope.close(status?.code ?? Status.OK);
        // grpc-js turns an 'error' event on the call into the status it sends.
        if (status === null) call.end();
        else call.emit("error", status);
      };
      scope.onAbort((status) => settle(status));
      void (async () => {
        try {
          for await (const message of fn(call.request, scope.ctx)) {
            if (settled) break; // break runs the generator's finally blocks
            await write(call, message, scope.ctx.signal);
          }
          settle(null);
        } catch (err) {
          settle(scope.fail(err));
        }
      })();
    };
  };
  const handler = bind(standaloneRuntime(), "/unbound/stream");
  (handler as Adapted)[ADAPTER] = { type: "server_stream", bind: bind as Adapter["bind"] };
  return handler;
}

/** Writes one message, waiting for the transport to drain when its buffer is full. */
async function write<Res>(
  call: ServerWritableStream<unknown, Res>,
  message: Res,
  signal: AbortSignal,
): Promise<void> {
  if (!call.write(message)) await once(call, "drain", { signal });
}

/**
 * The implementation with every adapter bound to the server's runtime. Every method present must be
 * an adapter of the method's kind; methods left out answer UNIMPLEMENTED (grpc-js does that).
 */
export function bindImplementation(
  serviceName: string,
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  rt: HandlerRuntime,
): UntypedServiceImplementation {
  const bound: UntypedServiceImplementation = {};
  for (const [key, method] of Object.entries(definition)) {
    const handler = implementation[key] as (UntypedHandleCall & Adapted) | undefined;
    if (handler === undefined) continue;
    const adapter = handler[ADAPTER];
    const type: CallType | undefined =
      !method.requestStream && !method.responseStream
        ? "unary"
        : !method.requestStream && method.responseStream
          ? "server_stream"
          : undefined;
    if (adapter === undefined || adapter.type !== type) {
      const want =
        type === "unary" ? "unary()" : type === "server_stream" ? "serverStream()" : "a supported adapter";
      throw new TypeError(`${serviceName}.${key}: wrap the handler with ${want}`);
    }
    bound[key] = adapter.bind(rt, method.path);
  }
  return bound;
}
