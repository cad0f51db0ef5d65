// Running the server: listen (loopback by default), optional TLS, and a graceful stop on
// SIGTERM/SIGINT that lets uploads in flight finish for a while, then cuts them off. An
// upload cut off leaves only a temp file, which the next start-up removes.

import { readFile } from "node:fs/promises";
import { environmentError, usageError } from "../common/errors.ts";
import { createServer, type ServerOptions } from "./app.ts";
import { parseListen } from "./listen.ts";

export { DEFAULT_LISTEN, parseListen } from "./listen.ts";

export interface RunServerOptions extends Omit<ServerOptions, "https"> {
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  /** How long in-flight requests may take to finish on shutdown. */
  shutdownGraceMs?: number;
  onListening?: (url: string) => void;
}

export async function runServer(options: RunServerOptions): Promise<void> {
  const { host, port } = parseListen(options.listen);
  if (!!options.tlsCert !== !!options.tlsKey) {
    throw usageError(
      "LB_USAGE_TLS",
      "TLS needs both --tls-cert and --tls-key.",
      "Give both files, or neither.",
    );
  }
  const https = options.tlsCert
    ? { cert: await readFile(options.tlsCert), key: await readFile(options.tlsKey!) }
    : null;
  const { app, adminTokenFile } = await createServer({ ...options, https });
  try {
    await app.listen({ host, port });
  } catch (error) {
    await app.close();
    throw environmentError(
      "LB_SERVER_LISTEN",
      `Can't listen on ${options.listen}: ${(error as Error).message}.`,
      "Pick a free port with --listen HOST:PORT.",
    );
  }
  const address = app.server.address();
  const actualPort = typeof address === "object" && address ? address.port : port;
  const url = `${https ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${actualPort}`;
  app.log.info(
    { url, adminTokenFile },
    "lifeboat server listening; the admin token is in the file named here",
  );
  options.onListening?.(url);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      app.log.info({ signal }, "stopping: finishing requests in flight");
      const timer = setTimeout(() => {
        app.log.warn("grace period over: cutting off the remaining requests");
        app.server.closeAllConnections();
      }, options.shutdownGraceMs ?? 10_000);
      app.close().finally(() => {
        clearTimeout(timer);
        resolve();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
}
