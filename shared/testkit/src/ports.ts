import { createServer } from "node:net";

/**
 * A TCP port that was free on 127.0.0.1 a moment ago: the kernel picks it (bind to port 0), we close
 * the socket and hand the number back. Another process may take it before the caller binds it, so
 * callers that spawn servers retry on "address in use" (startNatsServer does).
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("freePort: the socket has no TCP address"));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
