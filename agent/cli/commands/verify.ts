// lifeboat verify: do the catalog and the chunk store agree; with --read-data, is every
// blob still intact.
import { checkFailed, environmentError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import type { VerifyResult } from "../../client/api.ts";
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import { createProgress } from "../../progress.ts";
import type { Command } from "../command.ts";

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
    ...jsonOption,
  },
  async run(ctx) {
    const readData = ctx.flag("read-data");
    const client = await openConfiguredClient(ctx);
    const progress = createProgress(ctx.stderr);
    let result: VerifyResult | null = null;
    for await (const event of client.verify(readData)) {
      if (event.type === "progress")
        progress.update({
          phase: "verify",
          bytes: event.bytes,
          // Only --read-data reads bytes; without it the chunk count is the progress.
          totalBytes: readData ? (event.totalBytes ?? null) : null,
          item: `${event.done}/${event.total} chunks`,
        });
      else result = event;
    }
    progress.finish();
    if (!result)
      throw environmentError(
        "LB_VERIFY_CUT",
        `The server at ${client.url} ended verify without a result.`,
        "Check the server log, then run verify again.",
      );
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

export const verifyCommands: Command[] = [verifyCommand];
