// A real Lifeboat server in this process, on 127.0.0.1 with a free port, for the VM checks:
// guests reach it through QEMU's guestfwd. The admin client comes with it.

import { readFileSync } from "node:fs";
import { ApiClient } from "../../agent/client/api.ts";
import { createServer } from "../../server/app.ts";

export interface LoopbackServer {
  port: number;
  url: string;
  admin: ApiClient;
  close(): Promise<void>;
}

export async function startLoopbackServer(dataDir: string): Promise<LoopbackServer> {
  const server = await createServer({ dataDir, logger: false });
  await server.app.listen({ host: "127.0.0.1", port: 0 });
  const address = server.app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const url = `http://127.0.0.1:${port}`;
  const admin = new ApiClient(url, readFileSync(server.adminTokenFile, "utf8").trim());
  return { port, url, admin, close: () => server.app.close() };
}
