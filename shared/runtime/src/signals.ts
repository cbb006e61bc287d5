// SIGTERM (Kubernetes stopping a pod) and SIGINT (Ctrl-C) both mean "drain, then exit".

export const SHUTDOWN_SIGNALS = ["SIGTERM", "SIGINT"] as const;
export type ShutdownSignal = (typeof SHUTDOWN_SIGNALS)[number];

/** Calls `handler` on every SIGTERM or SIGINT until the returned function removes it. */
export function onShutdownSignal(handler: (signal: ShutdownSignal) => void): () => void {
  const listeners = SHUTDOWN_SIGNALS.map((signal) => {
    const listener = (): void => handler(signal);
    process.on(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  };
}
