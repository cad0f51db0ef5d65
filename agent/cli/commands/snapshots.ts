// lifeboat snapshots | snapshots export | forget: what the server holds, a copy of one
// snapshot for offline use, and forgetting one snapshot.
import { existsSync, readdirSync } from "node:fs";
import { formatBytes } from "../../../common/units.ts";
import { usageError } from "../../../common/errors.ts";
import { loadKeyFile } from "../../../common/repository/keys.ts";
import { connectionOptions, jsonOption, openClient } from "../../client/connect.ts";
import { openConfiguredClient } from "../../client/connect.ts";
import { exportSnapshot, openDirectorySource } from "../../client/local.ts";
import { loadAgentConfig } from "../../config.ts";
import type { Command } from "../command.ts";

export const snapshotsCommand: Command = {
  path: ["snapshots"],
  summary: "List snapshots, newest first (a host token sees only its own)",
  options: {
    ...connectionOptions,
    host: { type: "string", value: "NAME", description: "Only this host" },
    from: {
      type: "string",
      value: "DIR",
      description: "List without a server: an export or a server's data directory",
    },
    ...jsonOption,
  },
  async run(ctx) {
    const from = ctx.string("from");
    const source = from ? await openDirectorySource(from) : await openConfiguredClient(ctx);
    const list = await source.listSnapshots(ctx.string("host"));
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

export const forgetCommand: Command = {
  path: ["forget"],
  summary: "Forget one snapshot (admin token); its data goes at the next prune",
  options: { ...connectionOptions, ...jsonOption },
  positionals: [{ name: "SNAPSHOT", required: true }],
  async run(ctx) {
    const result = await (await openConfiguredClient(ctx)).deleteSnapshot(ctx.positionals[0]!);
    ctx.stdout.write(ctx.json ? `${JSON.stringify(result)}\n` : `forgot ${result.forgotten}\n`);
  },
};

export const snapshotExportCommand: Command = {
  path: ["snapshots", "export"],
  summary: "Copy one snapshot (manifest and chunks, still encrypted) into a directory",
  description:
    "The directory can be restored or recovered from without a server: 'lifeboat restore\n" +
    "--from DIR' or 'lifeboat recover --from DIR'. Blobs are copied as the server stores them,\n" +
    "so an encrypted snapshot stays encrypted; the key is needed to read it, as always.",
  options: {
    ...connectionOptions,
    "key-file": {
      type: "string",
      value: "FILE",
      description: "The repository key, to read the manifest (default: keyFile in the config)",
    },
    out: { type: "string", value: "DIR", description: "An empty or new directory" },
    ...jsonOption,
  },
  positionals: [{ name: "SNAPSHOT", required: true }],
  examples: ["lifeboat snapshots export 0193a5c3e0f2b8d4a1c7e9f06b2d --out /media/usb/web1"],
  async run(ctx) {
    const out = ctx.requireString("out");
    if (existsSync(out) && readdirSync(out).length > 0) {
      throw usageError(
        "LB_EXPORT_NOT_EMPTY",
        `${out} is not empty.`,
        "Export into a new or empty directory, so no old chunk is mixed in.",
      );
    }
    const config = await loadAgentConfig();
    const client = await openClient(ctx, config);
    const keyFile = ctx.string("key-file") ?? config?.keyFile;
    const keys = keyFile ? (await loadKeyFile(keyFile)).keys : null;
    const result = await exportSnapshot({ client, keys, snapshot: ctx.positionals[0]!, dir: out });
    if (ctx.json) ctx.stdout.write(`${JSON.stringify({ dir: out, ...result })}\n`);
    else {
      ctx.stdout.write(
        `exported ${ctx.positionals[0]} to ${out}: ${result.chunks} chunks, ${formatBytes(result.bytes)}\n`,
      );
    }
  },
};

export const snapshotCommands: Command[] = [snapshotsCommand, snapshotExportCommand, forgetCommand];
