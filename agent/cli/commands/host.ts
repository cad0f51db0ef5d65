// lifeboat host add | host list: the hosts that may back up (admin token).
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import type { Command } from "../command.ts";

export const hostAddCommand: Command = {
  path: ["host", "add"],
  summary: "Add a host (admin token); prints the host's token once",
  description:
    "The host token can create snapshots of that host and read them, nothing else: it can't\n" +
    "see other hosts and can't delete. The server keeps only its hash; save it now.",
  options: { ...connectionOptions, ...jsonOption },
  positionals: [{ name: "NAME", required: true }],
  examples: [
    "lifeboat host add web1 --server http://127.0.0.1:8450 --token-file /srv/lifeboat/admin.token",
  ],
  async run(ctx) {
    const result = await (await openConfiguredClient(ctx)).addHost(ctx.positionals[0]!);
    if (ctx.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    else ctx.stdout.write(`${result.token}\n`);
    if (!ctx.json)
      ctx.stderr.write(`host ${result.name} added; the token above is shown only once\n`);
  },
};

export const hostListCommand: Command = {
  path: ["host", "list"],
  summary: "List hosts with their snapshot counts (admin token)",
  options: { ...connectionOptions, ...jsonOption },
  async run(ctx) {
    const hosts = await (await openConfiguredClient(ctx)).listHosts();
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(hosts)}\n`);
    for (const h of hosts)
      ctx.stdout.write(
        `${h.name.padEnd(24)} ${String(h.snapshots).padStart(5)} snapshots  last ${h.lastBackup ?? "never"}\n`,
      );
  },
};

export const hostCommands: Command[] = [hostAddCommand, hostListCommand];
