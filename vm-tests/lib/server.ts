// A real Lifeboat server in this process, on 127.0.0.1 with a free port, for the VM checks:
// guests reach it through QEMU's guestfwd. The admin client comes with it.

import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { ApiClient } from "../../agent/client/api.ts";
import { createServer, type ServerOptions } from "../../server/app.ts";

export interface LoopbackServer {
  port: number;
  url: string;
  dataDir: string;
  admin: ApiClient;
  close(): Promise<void>;
}

export async function startLoopbackServer(
  dataDir: string,
  drills?: ServerOptions["drills"],
): Promise<LoopbackServer> {
  // Its log goes to DATA/server.log: the drill engine says there what it did and why.
  mkdirSync(dataDir, { recursive: true });
  const log = createWriteStream(path.join(dataDir, "server.log"), { flags: "a" });
  const server = await createServer({
    dataDir,
    logger: { level: "info", redact: ["req.headers.authorization"], stream: log },
    drills,
  });
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = server.app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  const admin = new ApiClient(url, readFileSync(server.adminTokenFile, "utf8").trim());
  return { port, url, dataDir, admin, close: () => server.app.close() };
}
