// lifeboat server: the backup server in the foreground.
import { mkdir } from "node:fs/promises";
import { usageError } from "../../../common/errors.ts";
import { parseSize } from "../../../common/units.ts";
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
    "rescue-kernel": {
      type: "string",
      value: "FILE",
      description: "Restore drills: the rescue kernel (default: this machine's)",
    },
    "rescue-modules": {
      type: "string",
      value: "DIR",
      description: "...and its modules, /lib/modules/VERSION (default: this machine's)",
    },
    "drill-keys": {
      type: "string",
      value: "DIR",
      description:
        "Keyring for drills of encrypted hosts: HOST.key, HOST.luks (default /etc/lifeboat/drill-keys)",
    },
    "drill-concurrency": {
      type: "string",
      value: "N",
      description: "Drills at once (default 1; each VM takes a core without KVM)",
    },
    "drill-memory": { type: "string", value: "MiB", description: "Drill VM memory (default 1536)" },
    "drill-evidence": {
      type: "string",
      value: "N",
      description: "Keep the evidence of the newest N drills per host (default 20)",
    },
    "standby-max": {
      type: "string",
      value: "SIZE",
      description:
        "Cap on warm standby images and their exports, e.g. 50G (default 20G; 0 keeps none)",
    },
    "signed-boot": {
      type: "string",
      value: "DIR",
      description: "Where Debian's signed shim and GRUB are, for Secure Boot hosts (default /)",
    },
  },
  examples: [
    "lifeboat server --data /srv/lifeboat",
    "lifeboat server --data /srv/lifeboat --listen 0.0.0.0:8450 --tls-cert c.pem --tls-key k.pem",
  ],
  async run(ctx) {
    const data = ctx.requireString("data");
    const listen = ctx.string("listen") ?? DEFAULT_LISTEN;
    // A mistyped option must not leave a new empty data directory behind.
    parseListen(listen);
    const drills = {
      kernel: ctx.string("rescue-kernel"),
      modules: ctx.string("rescue-modules"),
      keyring: ctx.string("drill-keys"),
      signedBootRoot: ctx.string("signed-boot"),
      concurrency: countOption(ctx.string("drill-concurrency"), "drill-concurrency", 1, 64),
      memoryMiB: countOption(ctx.string("drill-memory"), "drill-memory", 256, 65536),
      keepEvidence: countOption(ctx.string("drill-evidence"), "drill-evidence", 1, 100000),
      standbyMaxBytes: sizeOption(ctx.string("standby-max"), "standby-max"),
    };
    await mkdir(data, { recursive: true, mode: 0o700 });
    // Loaded here, so that no other command pays for fastify and its plugins.
    const { runServer } = await import("../../../server/main.ts");
    await runServer({
      dataDir: data,
      listen,
      tlsCert: ctx.string("tls-cert"),
      tlsKey: ctx.string("tls-key"),
      drills,
      gcGraceMs: envMs("LIFEBOAT_GC_GRACE_MS"),
      sessionTtlMs: envMs("LIFEBOAT_SESSION_TTL_MS"),
    });
  },
};

function countOption(
  text: string | undefined,
  name: string,
  min: number,
  max: number,
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw usageError(
      "LB_USAGE_NUMBER",
      `--${name} ${text} is not a whole number from ${min} to ${max}.`,
    );
  }
  return value;
}

function sizeOption(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const bytes = parseSize(text);
  if (bytes === null)
    throw usageError(
      "LB_USAGE_SIZE",
      `--${name} ${text} is not a size.`,
      'Write it like "50G" or "500M".',
    );
  return bytes;
}

/** Test and operations knobs: durations from the environment, in milliseconds. */
function envMs(name: string): number | undefined {
  const value = process.env[name];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

export const serverCommands: Command[] = [serverCommand];
