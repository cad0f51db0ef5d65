// lifeboat snapshots | forget: what the server holds, and forgetting one snapshot.
import { formatBytes } from "../../../common/units.ts";
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import type { Command } from "../command.ts";

export const snapshotsCommand: Command = {
  path: ["snapshots"],
  summary: "List snapshots, newest first (a host token sees only its own)",
  options: {
    ...connectionOptions,
    host: { type: "string", value: "NAME", description: "Only this host" },
    ...jsonOption,
  },
  async run(ctx) {
    const list = await (await openConfiguredClient(ctx)).listSnapshots(ctx.string("host"));
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

export const snapshotCommands: Command[] = [snapshotsCommand, forgetCommand];
