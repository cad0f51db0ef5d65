// lifeboat layout check --against FILE: exit 0 when the live layout matches, 1 on drift.
import { EXIT } from "../../../common/errors.ts";
import { LIFEBOAT_VERSION } from "../../../common/version.ts";
import { captureLayout } from "../../../layouts/capture/capture.ts";
import { readLayoutFile } from "../../../layouts/document.ts";
import { compareLayouts } from "../../../layouts/drift.ts";
import { liveSource } from "../../capture/live-source.ts";
import type { Command } from "../command.ts";
import { requireRoot } from "./layout-capture.ts";

export const layoutCheckCommand: Command = {
  path: ["layout", "check"],
  summary: "Compare the live layout with a saved one (exit 1 on drift)",
  description:
    "Captures the layout again, with the saved document's scope, and prints what changed.\n" +
    "Usage figures, mount option order and device numbers are ignored. Use it to rebuild\n" +
    "the rescue image only when the layout changed: lifeboat layout check ... || <rebuild>.",
  options: {
    against: { type: "string", value: "FILE", description: "The saved layout document (required)" },
    json: { type: "boolean", description: 'Print {"drift": bool, "changes": [...]}' },
  },
  examples: ["lifeboat layout check --against /var/lib/lifeboat/layout.json"],
  async run(ctx) {
    const saved = await readLayoutFile(ctx.requireString("against"));
    requireRoot("check");
    const live = await captureLayout(liveSource, {
      disks: saved.scope.wholeMachine ? [] : saved.scope.disks,
      now: new Date(),
      capturedBy: `lifeboat ${LIFEBOAT_VERSION}`,
    });
    const changes = compareLayouts(saved, live);
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify({ drift: changes.length > 0, changes }, null, 2)}\n`);
    } else if (changes.length === 0) {
      ctx.stdout.write(
        `No drift: the layout matches ${ctx.string("against")} (captured ${saved.capturedAt}).\n`,
      );
    } else {
      ctx.stdout.write(
        `Layout drift against ${ctx.string("against")} (captured ${saved.capturedAt}):\n`,
      );
      for (const change of changes) ctx.stdout.write(`  ${change.message}\n`);
    }
    return changes.length > 0 ? EXIT.check : EXIT.ok;
  },
};
