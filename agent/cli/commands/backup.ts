// lifeboat backup / lifeboat restore / lifeboat key create: the agent's side of the repository.
import { hostname } from "node:os";
import { usageError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import { LIFEBOAT_VERSION } from "../../../common/version.ts";
import { createKeyFile, loadKeyFile, type RepoKeys } from "../../../common/repository/keys.ts";
import { captureLayout } from "../../../layouts/capture/capture.ts";
import { runBackup } from "../../backup/backup.ts";
import { DEFAULT_BACKUP_STATE_DIR } from "../../backup/state.ts";
import { liveSource } from "../../capture/live-source.ts";
import { connectionOptions, openClient } from "../../client/connect.ts";
import { openDirectorySource } from "../../client/local.ts";
import { loadAgentConfig } from "../../config.ts";
import { createProgress } from "../../progress.ts";
import { runRestore } from "../../restore/restore.ts";
import type { Command, CommandContext } from "../command.ts";

const keyOption = {
  "key-file": {
    type: "string",
    value: "FILE",
    description: "The repository key (from 'lifeboat key create'); default: keyFile in the config",
  },
} as const;

async function keysFrom(ctx: CommandContext, configured: string | undefined) {
  const file = ctx.string("key-file") ?? configured;
  return file ? (await loadKeyFile(file)).keys : null;
}

function stateDir(configured: string | undefined) {
  return process.env.LIFEBOAT_STATE_DIR || configured || DEFAULT_BACKUP_STATE_DIR;
}

export const backupCommand: Command = {
  path: ["backup"],
  summary: "Back up this machine (its layout and every local filesystem), or just some paths",
  description:
    "Captures the disk layout, streams each mounted local filesystem through GNU tar (POSIX\n" +
    "format with xattrs, ACLs, SELinux labels, sparse files, numeric owners), cuts the stream\n" +
    "into content-defined chunks, uploads the chunks the server lacks and commits one snapshot.\n" +
    "Unchanged files are not read again (GNU tar incremental streams). Pre-hooks run first and\n" +
    "abort the backup when they fail; post-hooks always run. Progress goes to stderr: a bar on\n" +
    "a terminal, JSON lines otherwise. Prints the snapshot id (--json: a summary object).",
  options: {
    ...connectionOptions,
    ...keyOption,
    host: {
      type: "string",
      value: "NAME",
      description: "Host name (default: config, then hostname)",
    },
    path: {
      type: "string",
      multiple: true,
      value: "P",
      description: "Back up only this directory tree instead of the whole machine",
    },
    exclude: {
      type: "string",
      multiple: true,
      value: "PATTERN",
      description: "Also exclude this absolute path or glob",
    },
    "pre-hook": { type: "string", multiple: true, value: "CMD", description: "Run before (sh -c)" },
    "post-hook": { type: "string", multiple: true, value: "CMD", description: "Run after (sh -c)" },
    "no-layout": { type: "boolean", description: "Don't capture the disk layout (path backups)" },
    json: { type: "boolean", description: "Print the summary as JSON" },
  },
  examples: [
    "lifeboat backup",
    "lifeboat backup --path /srv/data --exclude '/srv/data/cache/*'",
    "lifeboat backup --pre-hook 'pg_dump -Fc app > /var/backups/app.dump' --json",
  ],
  async run(ctx) {
    const config = await loadAgentConfig();
    const client = await openClient(ctx, config);
    const keys = await keysFrom(ctx, config?.keyFile);
    // A host token knows its host; the admin token backs up the host named (or this one).
    const host =
      ctx.string("host") ??
      config?.host ??
      (await client.whoami()).host ??
      hostname().split(".")[0]!;
    const captureLayoutFn = ctx.flag("no-layout")
      ? null
      : () =>
          captureLayout(liveSource, {
            disks: [],
            now: new Date(),
            capturedBy: `lifeboat ${LIFEBOAT_VERSION}`,
          });
    if (!keys) {
      ctx.stderr.write(
        "lifeboat: warning: no repository key; this backup is compressed but not encrypted.\n" +
          "  hint: create one with 'lifeboat key create FILE' and pass --key-file or set keyFile.\n",
      );
    }
    const summary = await runBackup({
      client,
      host,
      keys,
      paths: ctx.strings("path"),
      excludes: [...(config?.excludes ?? []), ...ctx.strings("exclude")],
      hooks: {
        pre: [...(config?.hooks?.pre ?? []), ...ctx.strings("pre-hook")],
        post: [...(config?.hooks?.post ?? []), ...ctx.strings("post-hook")],
      },
      stateDir: stateDir(config?.stateDir),
      fullEvery: config?.fullEvery ?? 7,
      captureLayout: captureLayoutFn,
      progress: createProgress(ctx.stderr),
    });
    for (const warning of summary.warnings) ctx.stderr.write(`lifeboat: warning: ${warning}\n`);
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    const rate = summary.bytes / Math.max(summary.seconds, 1e-3);
    ctx.stderr.write(
      `snapshot ${summary.id} of ${summary.host}: ${summary.files} files, ` +
        `${formatBytes(summary.snapshotBytes)} in the snapshot; this run read ${formatBytes(summary.bytes)} ` +
        `(${formatBytes(rate)}/s), ${formatBytes(summary.newBytes)} of it new ` +
        `(${formatBytes(summary.storedBytes)} stored after compression), ` +
        `${formatBytes(summary.dedupBytes)} unchanged or deduplicated, in ${summary.seconds.toFixed(1)} s\n`,
    );
    ctx.stdout.write(`${summary.id}\n`);
  },
};

export const restoreCommand: Command = {
  path: ["restore"],
  summary: "Restore a snapshot's files into a directory, all of them or just some paths",
  description:
    "Fetches the chunks in parallel, checks each against its id, decrypts, decompresses and\n" +
    "extracts with GNU tar, keeping owners, permissions, xattrs, ACLs, SELinux labels, sparse\n" +
    "files and hard links. Files land at TARGET/<original path>. With --path, only the chunks\n" +
    "that hold those files are fetched (from the snapshot's file index).",
  options: {
    ...connectionOptions,
    ...keyOption,
    target: { type: "string", value: "DIR", description: "Where to restore (must exist)" },
    path: {
      type: "string",
      multiple: true,
      value: "P",
      description: "Restore only this file or directory (absolute, as on the backed-up host)",
    },
    from: {
      type: "string",
      value: "DIR",
      description:
        "Read the snapshot without a server: from an export ('snapshots export') or a server's data directory",
    },
    extractors: {
      type: "string",
      value: "N",
      description:
        "GNU tar processes extracting a big filesystem at once, for disks and filesystems that write faster in parallel (default 1)",
    },
    json: { type: "boolean", description: "Print the summary as JSON" },
  },
  positionals: [{ name: "SNAPSHOT", required: true }],
  examples: [
    "lifeboat restore 01JD3K... --target /mnt/restore",
    "lifeboat restore 01JD3K... --target /tmp/r --path /etc/fstab --path /srv/data/reports",
  ],
  async run(ctx) {
    const config = await loadAgentConfig();
    const from = ctx.string("from");
    const client = from ? await openDirectorySource(from) : await openClient(ctx, config);
    const keys: RepoKeys | null = await keysFrom(ctx, config?.keyFile);
    const extractors = ctx.string("extractors");
    if (extractors !== undefined && !/^([1-9]|1[0-6])$/.test(extractors)) {
      throw usageError(
        "LB_USAGE",
        `--extractors ${extractors} is not a number from 1 to 16.`,
        "Give a whole number: 1 (the default) extracts with one tar; more only helps storage that writes faster in parallel.",
      );
    }
    const summary = await runRestore({
      client,
      keys,
      snapshot: ctx.positionals[0]!,
      target: ctx.requireString("target"),
      paths: ctx.strings("path"),
      progress: createProgress(ctx.stderr),
      extractors: extractors === undefined ? undefined : Number(extractors),
    });
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    ctx.stderr.write(
      `restored ${summary.files} entries, ${formatBytes(summary.bytes)} from ${summary.chunks} chunks ` +
        `in ${summary.seconds.toFixed(1)} s\n`,
    );
  },
};

export const keyCreateCommand: Command = {
  path: ["key", "create"],
  summary: "Create a repository key file (32 random bytes, mode 0600)",
  description:
    "Backups made with this key are encrypted on the host (AES-256-GCM) and their chunk ids are\n" +
    "keyed hashes, so the server and anyone who steals its disks learn no file content. Keep a\n" +
    "copy of the key somewhere safe and off this machine: without it the backups can't be read.\n" +
    "Hosts that share a key deduplicate against each other.",
  options: { json: { type: "boolean", description: "Print {file, keyId} as JSON" } },
  positionals: [{ name: "FILE", required: true }],
  async run(ctx) {
    const file = ctx.positionals[0]!;
    const { keys } = await createKeyFile(file);
    if (ctx.json) ctx.stdout.write(`${JSON.stringify({ file, keyId: keys.keyId })}\n`);
    else ctx.stdout.write(`created ${file} (key id ${keys.keyId})\n`);
  },
};

export const backupCommands: Command[] = [backupCommand, restoreCommand, keyCreateCommand];
