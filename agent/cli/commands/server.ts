// lifeboat server | host add | host list | snapshots | verify | prune | forget
import { mkdir } from "node:fs/promises";
import { checkFailed, usageError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import { DEFAULT_LISTEN, runServer } from "../../../server/main.ts";
import type { VerifyResult } from "../../client/api.ts";
import { connectionOptions, openClient } from "../../client/connect.ts";
import { loadAgentConfig } from "../../config.ts";
import { createProgress } from "../../progress.ts";
import type { Command, CommandContext } from "../command.ts";

const json = { json: { type: "boolean", description: "Print machine-readable JSON" } } as const;

async function client(ctx: CommandContext) {
  return openClient(ctx, await loadAgentConfig());
}

export const serverCommand: Command = {
  path: ["server"],
  summary: "Run the backup server (API, catalog and chunk store in DIR)",
  description:
    "Stores backups under DIR: catalog.sqlite (SQLite), chunks/, manifests/. On first start it\n" +
    "creates the admin token in DIR/admin.token (mode 0600) and never logs it. Listens on\n" +
    `loopback (${DEFAULT_LISTEN}) unless told otherwise. Logs JSON lines (pino) to stdout.\n` +
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
    await mkdir(data, { recursive: true, mode: 0o700 });
    await runServer({
      dataDir: data,
      listen: ctx.string("listen") ?? DEFAULT_LISTEN,
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

export const hostAddCommand: Command = {
  path: ["host", "add"],
  summary: "Add a host (admin token); prints the host's token once",
  description:
    "The host token can create snapshots of that host and read them, nothing else: it can't\n" +
    "see other hosts and can't delete. The server keeps only its hash; save it now.",
  options: { ...connectionOptions, ...json },
  positionals: [{ name: "NAME", required: true }],
  examples: [
    "lifeboat host add web1 --server http://127.0.0.1:8450 --token-file /srv/lifeboat/admin.token",
  ],
  async run(ctx) {
    const result = await (await client(ctx)).addHost(ctx.positionals[0]!);
    if (ctx.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    else ctx.stdout.write(`${result.token}\n`);
    if (!ctx.json)
      ctx.stderr.write(`host ${result.name} added; the token above is shown only once\n`);
  },
};

export const hostListCommand: Command = {
  path: ["host", "list"],
  summary: "List hosts with their snapshot counts (admin token)",
  options: { ...connectionOptions, ...json },
  async run(ctx) {
    const hosts = await (await client(ctx)).listHosts();
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(hosts)}\n`);
    for (const h of hosts)
      ctx.stdout.write(
        `${h.name.padEnd(24)} ${String(h.snapshots).padStart(5)} snapshots  last ${h.lastBackup ?? "never"}\n`,
      );
  },
};

export const snapshotsCommand: Command = {
  path: ["snapshots"],
  summary: "List snapshots, newest first (a host token sees only its own)",
  options: {
    ...connectionOptions,
    host: { type: "string", value: "NAME", description: "Only this host" },
    ...json,
  },
  async run(ctx) {
    const list = await (await client(ctx)).listSnapshots(ctx.string("host"));
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(list)}\n`);
    if (list.length === 0) return void ctx.stdout.write("no snapshots\n");
    for (const s of list) {
      const stats = s.stats
        ? `${formatBytes(s.stats.bytes).padStart(10)} read ${formatBytes(s.stats.newBytes).padStart(10)} new ${String(s.stats.files).padStart(8)} files`
        : "";
      ctx.stdout.write(
        `${s.id}  ${s.host.padEnd(16)} ${s.committedAt}  ${stats}${s.keyId ? "  encrypted" : ""}\n`,
      );
    }
  },
};

export const verifyCommand: Command = {
  path: ["verify"],
  summary: "Check that the catalog and the chunk store agree; --read-data re-hashes every chunk",
  description:
    "Exit 1 when something is missing or damaged; each bad chunk is named with the snapshots\n" +
    "it breaks. With the admin token it checks everything, with a host token that host's\n" +
    "snapshots. Progress goes to stderr.",
  options: {
    ...connectionOptions,
    "read-data": { type: "boolean", description: "Re-hash every blob (reads all data)" },
    ...json,
  },
  async run(ctx) {
    const progress = createProgress(ctx.stderr);
    let result: VerifyResult | null = null;
    for await (const event of (await client(ctx)).verify(ctx.flag("read-data"))) {
      if (event.type === "progress")
        progress.update({
          phase: "verify",
          bytes: event.bytes,
          item: `${event.done}/${event.total} chunks`,
        });
      else result = event;
    }
    progress.finish();
    if (!result) throw new Error("the server ended verify without a result");
    if (ctx.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      ctx.stdout.write(
        `${result.snapshots} snapshots, ${result.chunks} chunks${ctx.flag("read-data") ? `, ${formatBytes(result.bytes)} re-hashed` : ""}; ` +
          `${result.missing.length} missing, ${result.corrupt.length} damaged, ${result.manifestsMissing.length} bad manifests, ${result.orphanFiles} orphan files\n`,
      );
      for (const c of result.missing)
        ctx.stdout.write(`missing chunk ${c.id}: breaks ${c.snapshots.join(", ")}\n`);
      for (const c of result.corrupt)
        ctx.stdout.write(`damaged chunk ${c.id}: breaks ${c.snapshots.join(", ")}\n`);
      for (const id of result.manifestsMissing)
        ctx.stdout.write(`missing or damaged manifest: snapshot ${id}\n`);
    }
    if (!result.ok) {
      throw checkFailed(
        "LB_VERIFY_DAMAGE",
        `Verify found damage: ${result.brokenSnapshots.length} snapshot(s) can't be fully restored.`,
        "Run a new backup of the affected hosts (it re-uploads what is still on them), then prune the broken snapshots.",
      );
    }
  },
};

const keep = (description: string) => ({ type: "string" as const, value: "N", description });

export const pruneCommand: Command = {
  path: ["prune"],
  summary: "Forget snapshots by a retention policy and collect garbage (admin token)",
  description:
    "Keeps the snapshots any --keep-* rule selects (per host), forgets the rest, then deletes\n" +
    "chunks no snapshot references. Safe while backups run: chunks of uploads in progress are\n" +
    "held, and new chunks get a grace period. --dry-run shows what would go.",
  options: {
    ...connectionOptions,
    "keep-last": keep("Keep the N newest"),
    "keep-hourly": keep("Keep the newest of each of the last N hours"),
    "keep-daily": keep("Keep the newest of each of the last N days"),
    "keep-weekly": keep("Keep the newest of each of the last N weeks"),
    "keep-monthly": keep("Keep the newest of each of the last N months"),
    host: { type: "string", value: "NAME", description: "Only this host" },
    "dry-run": { type: "boolean", description: "Show what would be forgotten; change nothing" },
    ...json,
  },
  examples: ["lifeboat prune --keep-last 7 --keep-daily 14 --keep-monthly 12 --dry-run"],
  async run(ctx) {
    const number = (name: string) => {
      const value = ctx.string(name);
      if (value === undefined) return undefined;
      if (!/^\d+$/.test(value)) throw checkFailedUsage(name, value);
      return Number(value);
    };
    const result = await (
      await client(ctx)
    ).prune({
      host: ctx.string("host"),
      keepLast: number("keep-last"),
      keepHourly: number("keep-hourly"),
      keepDaily: number("keep-daily"),
      keepWeekly: number("keep-weekly"),
      keepMonthly: number("keep-monthly"),
      dryRun: ctx.flag("dry-run"),
    });
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(result)}\n`);
    for (const h of result.hosts) {
      ctx.stdout.write(
        `${h.host}: keep ${h.keep.length}, ${ctx.flag("dry-run") ? "would forget" : "forgot"} ${h.forget.length}\n`,
      );
      for (const id of h.forget)
        ctx.stdout.write(`  ${ctx.flag("dry-run") ? "would forget" : "forgot"} ${id}\n`);
    }
    if (result.gc)
      ctx.stdout.write(
        `collected ${result.gc.chunks} chunks, ${formatBytes(result.gc.bytes)} freed\n`,
      );
  },
};

function checkFailedUsage(name: string, value: string) {
  return usageError(
    "LB_USAGE",
    `--${name} ${value} is not a whole number.`,
    `For example --${name} 7`,
  );
}

export const forgetCommand: Command = {
  path: ["forget"],
  summary: "Forget one snapshot (admin token); its data goes at the next prune",
  options: { ...connectionOptions, ...json },
  positionals: [{ name: "SNAPSHOT", required: true }],
  async run(ctx) {
    const result = await (await client(ctx)).deleteSnapshot(ctx.positionals[0]!);
    ctx.stdout.write(ctx.json ? `${JSON.stringify(result)}\n` : `forgot ${result.forgotten}\n`);
  },
};

export const serverCommands: Command[] = [
  serverCommand,
  hostAddCommand,
  hostListCommand,
  snapshotsCommand,
  verifyCommand,
  pruneCommand,
  forgetCommand,
];
