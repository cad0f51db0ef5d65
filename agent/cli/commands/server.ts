// lifeboat server: the backup server in the foreground.
import { mkdir } from "node:fs/promises";
import { DEFAULT_LISTEN, parseListen } from "../../../server/listen.ts";
import type { Command } from "../command.ts";

export const serverCommand: Command = {
  path: ["server"],
  summary: "Run the backup server (API, catalog and chunk store in DIR)",
  description:
    "Stores backups under DIR: catalog.sqlite (SQLite), chunks/, manifests/. On first start it\n" +
    "creates the admin token in DIR/admin.token (mode 0600) and never logs it. Listens on\n" +
    `loopback (${DEFAULT_LISTEN}) unless told otherwise. Logs JSON lines (pino) to stderr.\n` +
    "SIGTERM/SIGINT stop it gracefully. The API is described at /openapi.json and /docs.",
  options: {
    data: { type: "string", value: "DIR", description: "Data directory (created if missing)" },
    listen: {
      type: "string",
      value: "HOST:PORT",
      description: `Address to listen on (default ${DEFAULT_LISTEN})`,
    },
    "tls-cert": {
      type: "string",
      value: "FILE",
      description: "Serve HTTPS with this certificate (PEM)",
    },
    "tls-key": { type: "string", value: "FILE", description: "...and this private key (PEM)" },
  },
  examples: [
    "lifeboat server --data /srv/lifeboat",
    "lifeboat server --data /srv/lifeboat --listen 0.0.0.0:8450 --tls-cert c.pem --tls-key k.pem",
  ],
  async run(ctx) {
    const data = ctx.requireString("data");
    const listen = ctx.string("listen") ?? DEFAULT_LISTEN;
    // A mistyped address must not leave a new empty data directory behind.
    parseListen(listen);
    await mkdir(data, { recursive: true, mode: 0o700 });
    // Loaded here, so that no other command pays for fastify and its plugins.
    const { runServer } = await import("../../../server/main.ts");
    await runServer({
      dataDir: data,
      listen,
      tlsCert: ctx.string("tls-cert"),
      tlsKey: ctx.string("tls-key"),
      gcGraceMs: envMs("LIFEBOAT_GC_GRACE_MS"),
      sessionTtlMs: envMs("LIFEBOAT_SESSION_TTL_MS"),
    });
  },
};

/** Test and operations knobs: durations from the environment, in milliseconds. */
function envMs(name: string): number | undefined {
  const value = process.env[name];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

export const serverCommands: Command[] = [serverCommand];
