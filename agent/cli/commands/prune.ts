// lifeboat prune: forget snapshots by a retention policy, then collect garbage (admin).
import { usageError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import { checkRetentionPolicy } from "../../../server/retention.ts";
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import type { Command } from "../command.ts";

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
    ...jsonOption,
  },
  examples: ["lifeboat prune --keep-last 7 --keep-daily 14 --keep-monthly 12 --dry-run"],
  async run(ctx) {
    const number = (name: string) => {
      const value = ctx.string(name);
      if (value === undefined) return undefined;
      if (!/^\d{1,7}$/.test(value))
        throw usageError(
          "LB_USAGE",
          `--${name} ${value} is not a whole number.`,
          `For example --${name} 7`,
        );
      return Number(value);
    };
    const policy = {
      keepLast: number("keep-last"),
      keepHourly: number("keep-hourly"),
      keepDaily: number("keep-daily"),
      keepWeekly: number("keep-weekly"),
      keepMonthly: number("keep-monthly"),
    };
    // Refused here already, before asking the server: no rule would forget everything.
    checkRetentionPolicy(policy);
    const client = await openConfiguredClient(ctx);
    const result = await client.prune({
      host: ctx.string("host"),
      ...policy,
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

export const pruneCommands: Command[] = [pruneCommand];
