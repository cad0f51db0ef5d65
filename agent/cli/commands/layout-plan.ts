// lifeboat layout plan / layout apply: the restore planner and its executor.
import path from "node:path";
import { usageError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import { readLayoutFile } from "../../../layouts/document.ts";
import { destroyedBy, planRestore } from "../../../layouts/plan/plan.ts";
import { renderScript } from "../../../layouts/plan/script.ts";
import type { Plan } from "../../../layouts/plan/types.ts";
import type { Layout } from "../../../layouts/schema.ts";
import { applyPlan, preflight } from "../../layout/apply.ts";
import { readInventory } from "../../layout/inventory.ts";
import type { Command, CommandContext, OptionSpec } from "../command.ts";
import { requireRoot, resolveDevice } from "./layout-capture.ts";

export const DEFAULT_TARGET_ROOT = "/mnt/lifeboat";

const planOptions: Record<string, OptionSpec> = {
  layout: {
    type: "string",
    value: "FILE",
    description: "The layout document to rebuild (required)",
  },
  map: {
    type: "string",
    multiple: true,
    value: "OLD=NEW",
    description: "Put layout disk OLD on this machine's disk NEW (wins over automatic mapping)",
  },
  "target-root": {
    type: "string",
    value: "DIR",
    description: `Mount the rebuilt filesystems here (default ${DEFAULT_TARGET_ROOT})`,
  },
  "no-mount": { type: "boolean", description: "Stop after making filesystems; mount nothing" },
  source: {
    type: "string",
    multiple: true,
    value: "PATH",
    description: "The backup source; the disks under it are never written",
  },
  protect: {
    type: "string",
    multiple: true,
    value: "DEV",
    description: "Never write to this disk",
  },
  "key-file": {
    type: "string",
    multiple: true,
    value: "NAME=FILE",
    description: "Passphrase file for a LUKS device (mapper name or UUID; NAME '*' for all)",
  },
};

function parseMaps(values: string[]): Record<string, string> {
  const maps: Record<string, string> = {};
  for (const value of values) {
    const match = /^(\/dev\/\S+)=(\/dev\/\S+)$/.exec(value);
    if (!match) {
      throw usageError(
        "LB_USAGE_MAP",
        `--map ${value}: expected OLD=NEW, e.g. --map /dev/vda=/dev/nvme0n1.`,
      );
    }
    maps[match[1]!] = match[2]!;
  }
  return maps;
}

function parseKeyFiles(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const index = value.indexOf("=");
    if (index <= 0)
      throw usageError(
        "LB_USAGE_KEY_FILE",
        `--key-file ${value}: expected NAME=FILE, e.g. --key-file cr_root=/root/key.`,
      );
    out[value.slice(0, index)] = path.resolve(value.slice(index + 1));
  }
  return out;
}

async function buildPlan(
  ctx: CommandContext,
): Promise<{ plan: Plan; layout: Layout; keyFiles: Record<string, string> }> {
  const layout = await readLayoutFile(ctx.requireString("layout"));
  const maps = parseMaps(ctx.strings("map"));
  requireRoot("planning");
  for (const [from, to] of Object.entries(maps))
    maps[from] = await resolveDevice(to).catch(() => to);
  const keyFiles = parseKeyFiles(ctx.strings("key-file"));
  const inventory = await readInventory(ctx.strings("source"));
  const protect = [
    ...inventory.protect,
    ...ctx.strings("protect").map((device) => ({ device, reason: "was protected with --protect" })),
  ];
  const targetRoot = ctx.flag("no-mount")
    ? null
    : path.resolve(ctx.string("target-root") ?? DEFAULT_TARGET_ROOT);
  const plan = planRestore(layout, inventory.targets, { maps, protect, targetRoot, keyFiles });
  return { plan, layout, keyFiles };
}

export function renderSummary(plan: Plan): string {
  const lines = [`Restore plan ${plan.planId} for ${plan.host}`, "", "Disks:"];
  for (const d of plan.disks) {
    lines.push(
      `  ${d.from} (${formatBytes(d.fromBytes)}) -> ${d.to} (${formatBytes(d.toBytes)})  [${d.reason}]`,
    );
  }
  if (plan.resizes.length) {
    lines.push("", "Size changes:");
    for (const r of plan.resizes)
      lines.push(
        `  ${r.what}: ${formatBytes(r.fromBytes)} -> ${formatBytes(r.toBytes)}  (${r.why})`,
      );
  }
  const destroyed = destroyedBy(plan);
  lines.push("", "This will destroy:");
  for (const d of destroyed) lines.push(`  ${d}`);
  if (plan.warnings.length) {
    lines.push("", "Warnings:");
    for (const w of plan.warnings) lines.push(`  ${w}`);
  }
  lines.push("", "Steps:");
  plan.steps.forEach((s, i) => lines.push(`  ${String(i + 1).padStart(3)}. ${s.title}`));
  return `${lines.join("\n")}\n`;
}

export const layoutPlanCommand: Command = {
  path: ["layout", "plan"],
  summary: "Plan how to rebuild a layout on this machine's disks (changes nothing)",
  description:
    "Maps the layout's disks to this machine's disks, fits the partitions to their sizes and\n" +
    "lists the ordered steps. --script prints the exact shell script 'layout apply' runs.",
  options: {
    ...planOptions,
    script: { type: "boolean", description: "Print the plan as a reviewable shell script" },
    json: { type: "boolean", description: "Print the plan as JSON" },
  },
  examples: [
    "lifeboat layout plan --layout layout.json --script",
    "lifeboat layout plan --layout layout.json --map /dev/vda=/dev/nvme0n1 --json",
  ],
  async run(ctx) {
    if (ctx.flag("script") && ctx.json)
      throw usageError("LB_USAGE", "Pass --script or --json, not both.");
    requireRoot("planning");
    const { plan } = await buildPlan(ctx);
    if (ctx.json) ctx.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
    else if (ctx.flag("script")) ctx.stdout.write(renderScript(plan));
    else ctx.stdout.write(renderSummary(plan));
  },
};

export const layoutApplyCommand: Command = {
  path: ["layout", "apply"],
  summary: "Rebuild a layout on this machine's disks (destroys what is on the target disks)",
  description:
    "Runs the plan that 'layout plan --script' shows, step by step. Needs --yes. A failed run\n" +
    "can be repeated: finished steps are skipped.",
  options: {
    ...planOptions,
    yes: { type: "boolean", description: "Confirm that the target disks may be wiped" },
    verbose: { type: "boolean", description: "Show the output of every tool as it runs" },
    json: { type: "boolean", description: "Print progress as JSON lines" },
  },
  examples: ["lifeboat layout apply --layout layout.json --map /dev/vda=/dev/vdb --yes"],
  async run(ctx) {
    const { plan, layout, keyFiles } = await buildPlan(ctx);
    if (!ctx.flag("yes")) {
      ctx.stderr.write(renderSummary(plan));
      throw usageError(
        "LB_CONFIRM",
        `Applying this plan destroys what is on ${plan.disks.map((d) => d.to).join(", ")}.`,
        "Review the plan above (or 'lifeboat layout plan --script'), then add --yes.",
      );
    }
    await preflight(plan, layout, { keyFiles });
    await applyPlan(plan, {
      keyFiles,
      stateDir: process.env.LIFEBOAT_STATE_DIR || undefined,
      onEvent: (event) => {
        if (ctx.json) {
          if (event.type !== "step-output") {
            ctx.stdout.write(
              `${JSON.stringify({ event: event.type, index: event.index, total: event.total, id: event.step.id, ...("seconds" in event ? { seconds: event.seconds, skipped: event.skipped } : {}) })}\n`,
            );
          }
        } else if (event.type === "step-output") {
          if (ctx.flag("verbose"))
            ctx.stderr.write(event.text.replace(/^lifeboat: step .*\n/gm, ""));
        } else if (event.type === "step-start") {
          ctx.stdout.write(`[${event.index}/${event.total}] ${event.step.title}\n`);
        } else if (event.skipped) {
          ctx.stdout.write(`      already done\n`);
        }
      },
    });
    if (!ctx.json)
      ctx.stdout.write(
        `Layout rebuilt${plan.targetRoot ? `; mounted under ${plan.targetRoot}` : ""}.\n`,
      );
  },
};
