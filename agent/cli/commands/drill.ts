// lifeboat drill run | list | show | settings, and lifeboat report: restore drills on the
// server (admin token for run and settings), and the evidence report for auditors.
import { writeFile } from "node:fs/promises";
import type { Drill, DrillSettings } from "../../../common/drills.ts";
import { EXIT, usageError } from "../../../common/errors.ts";
import { parseDuration } from "../../../common/units.ts";
import { formatDuration } from "../../progress.ts";
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import type { Command, CommandContext } from "../command.ts";

function durationOption(ctx: CommandContext, name: string): number | undefined {
  const text = ctx.string(name);
  if (text === undefined) return undefined;
  const seconds = parseDuration(text);
  if (seconds === null) {
    throw usageError(
      "LB_USAGE_DURATION",
      `--${name} ${text} is not a duration.`,
      'Write it like "90s", "15m", "1h30m" or "2d".',
    );
  }
  return seconds;
}

const secs = (n: number | null) => (n === null ? "-" : formatDuration(n));

/** One drill as a few readable lines. */
export function describeDrill(drill: Drill): string {
  const lines = [
    `drill ${drill.id}  ${drill.host}  snapshot ${drill.snapshot}  ${drill.state.toUpperCase()}`,
    `  trigger ${drill.trigger}, created ${drill.createdAt}${drill.finishedAt ? `, finished ${drill.finishedAt}` : ""}`,
    `  RTO ${secs(drill.rtoSeconds)}${drill.maxRtoSeconds ? ` (budget ${secs(drill.maxRtoSeconds)})` : ""}  RPO ${secs(drill.rpoSeconds)}`,
  ];
  if (drill.phases.length > 0)
    lines.push(
      `  phases: ${drill.phases.map((p) => `${p.name} ${p.seconds.toFixed(0)} s${p.ok ? "" : " FAILED"}`).join(", ")}`,
    );
  const level = (v: boolean | null) => (v === null ? "-" : v ? "ok" : "FAILED");
  lines.push(
    `  L1 boot ${level(drill.levels.boot)}  L2 mounts ${level(drill.levels.mounts)}  L3 files ${level(drill.levels.files)}  L4 probes ${level(drill.levels.probes)}`,
  );
  for (const probe of drill.probes)
    lines.push(`  probe ${probe.name}: exit ${probe.exitCode ?? "none (timed out)"}`);
  if (drill.failedPhase) lines.push(`  failed in ${drill.failedPhase}: ${drill.reason}`);
  if (drill.evidence.length > 0) lines.push(`  evidence: ${drill.evidence.join(", ")}`);
  return `${lines.join("\n")}\n`;
}

export const drillRunCommand: Command = {
  path: ["drill", "run"],
  summary: "Restore a snapshot onto a fresh VM on the server, boot it and check it (admin)",
  description:
    "Asks the server for a restore drill of HOST (its latest snapshot unless --snapshot) and\n" +
    "follows it phase by phase. Exits 0 when the restored machine booted and every check\n" +
    "held, 1 when the drill failed or its RTO exceeded --max-rto. --junit writes the result\n" +
    "as JUnit XML, so CI systems show the drill as tests.",
  options: {
    ...connectionOptions,
    snapshot: { type: "string", value: "ID", description: "The snapshot (default: the latest)" },
    "max-rto": { type: "string", value: "DURATION", description: "Fail when the RTO exceeds it" },
    junit: { type: "string", value: "FILE", description: "Write JUnit XML here" },
    "migrate-bus": {
      type: "string",
      value: "virtio|nvme",
      description: "Rehearse a migration onto disks on this bus",
    },
    "migrate-scale": {
      type: "string",
      value: "FACTOR",
      description: "...and/or disks this much larger or smaller (1.5, 0.8)",
    },
    ...jsonOption,
  },
  positionals: [{ name: "HOST", required: true }],
  examples: ["lifeboat drill run web1 --max-rto 15m --junit drill.xml"],
  async run(ctx) {
    const client = await openConfiguredClient(ctx);
    const bus = ctx.string("migrate-bus");
    if (bus !== undefined && bus !== "virtio" && bus !== "nvme")
      throw usageError("LB_USAGE_BUS", `--migrate-bus ${bus} is not virtio or nvme.`);
    const scaleText = ctx.string("migrate-scale");
    const scale = scaleText === undefined ? undefined : Number(scaleText);
    if (scale !== undefined && !(scale >= 0.1 && scale <= 16))
      throw usageError("LB_USAGE_SCALE", `--migrate-scale ${scaleText} is not between 0.1 and 16.`);
    const maxRto = durationOption(ctx, "max-rto");
    const queued = await client.requestDrill({
      host: ctx.positionals[0]!,
      snapshot: ctx.string("snapshot"),
      maxRtoSeconds: maxRto,
      migrate: bus || scale ? { bus: bus as "virtio" | "nvme" | undefined, scale } : undefined,
    });
    ctx.stderr.write(`drill ${queued.id}: ${queued.host} snapshot ${queued.snapshot}, queued\n`);
    let final: Drill = queued;
    for await (const event of client.drillEvents(queued.id)) {
      if (event.type === "state") {
        final = event.drill;
        continue;
      }
      if (ctx.json) ctx.stderr.write(`${JSON.stringify(event)}\n`);
      else if (event.state !== "start" || ctx.stderr.isTTY)
        ctx.stderr.write(`drill ${queued.id}: ${event.phase} ${event.state}\n`);
      else ctx.stderr.write(`drill ${queued.id}: ${event.phase}...\n`);
    }
    if (final.state !== "passed" && final.state !== "failed")
      final = await client.getDrill(queued.id);
    const junit = ctx.string("junit");
    if (junit) await writeFile(junit, await client.drillJunit(final.id));
    ctx.stdout.write(ctx.json ? `${JSON.stringify(final)}\n` : describeDrill(final));
    return final.state === "passed" ? EXIT.ok : EXIT.check;
  },
};

export const drillListCommand: Command = {
  path: ["drill", "list"],
  summary: "List restore drills, newest first",
  options: {
    ...connectionOptions,
    host: { type: "string", value: "NAME", description: "Only this host" },
    since: { type: "string", value: "DATE", description: "Only drills since (ISO 8601)" },
    ...jsonOption,
  },
  async run(ctx) {
    const drills = await (
      await openConfiguredClient(ctx)
    ).listDrills({
      host: ctx.string("host"),
      since: isoDate(ctx.string("since")),
    });
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(drills)}\n`);
    if (drills.length === 0) return void ctx.stdout.write("no drills\n");
    for (const d of drills)
      ctx.stdout.write(
        `${d.id}  ${d.host.padEnd(16)} ${d.createdAt}  ${d.state.padEnd(7)} RTO ${secs(d.rtoSeconds).padStart(8)}  ${d.failedPhase ? `${d.failedPhase}: ${d.reason}` : ""}\n`,
      );
  },
};

export const drillShowCommand: Command = {
  path: ["drill", "show"],
  summary: "Show one drill: phases, levels, probes, RTO, RPO and evidence",
  options: { ...connectionOptions, ...jsonOption },
  positionals: [{ name: "ID", required: true }],
  async run(ctx) {
    const drill = await (await openConfiguredClient(ctx)).getDrill(ctx.positionals[0]!);
    ctx.stdout.write(ctx.json ? `${JSON.stringify(drill)}\n` : describeDrill(drill));
  },
};

/** NAME=COMMAND */
function parseProbe(text: string, timeoutSeconds: number): DrillSettings["probes"][number] {
  const eq = text.indexOf("=");
  if (eq <= 0) {
    throw usageError(
      "LB_USAGE_PROBE",
      `--probe ${text} is not NAME=COMMAND.`,
      "For example --probe 'db=systemctl is-active postgresql'.",
    );
  }
  return { name: text.slice(0, eq), command: text.slice(eq + 1), timeoutSeconds };
}

export const drillSettingsCommand: Command = {
  path: ["drill", "settings"],
  summary: "Show or change a host's drill schedule, probes and RTO/RPO targets",
  description:
    "Schedules: off, after-snapshot, 'nightly HH:MM', 'weekly DAY HH:MM' (UTC). A probe is a\n" +
    "command run inside the restored machine; exit 0 passes. Targets are what the report\n" +
    "holds the measured RTO and RPO to. Without changes it prints the settings.",
  options: {
    ...connectionOptions,
    schedule: { type: "string", value: "WHEN", description: "When drills run" },
    probe: {
      type: "string",
      multiple: true,
      value: "NAME=COMMAND",
      description: "A user probe (repeatable; replaces the probes)",
    },
    "no-probes": { type: "boolean", description: "Remove every probe" },
    "probe-timeout": { type: "string", value: "DURATION", description: "Per probe (default 60s)" },
    "rto-target": { type: "string", value: "DURATION", description: "The RTO target" },
    "rpo-target": { type: "string", value: "DURATION", description: "The RPO target" },
    "max-rto": {
      type: "string",
      value: "DURATION",
      description: "RTO budget for scheduled drills (over it fails)",
    },
    ...jsonOption,
  },
  positionals: [{ name: "HOST", required: true }],
  examples: [
    "lifeboat drill settings web1 --schedule 'nightly 02:30' --probe 'web=curl -fsS localhost/health' --rto-target 15m --rpo-target 24h",
  ],
  async run(ctx) {
    const host = ctx.positionals[0]!;
    const client = await openConfiguredClient(ctx);
    const current = await client.getDrillSettings(host);
    const next: DrillSettings = structuredClone(current);
    const schedule = ctx.string("schedule");
    if (schedule !== undefined) next.schedule = schedule;
    const timeout = durationOption(ctx, "probe-timeout") ?? 60;
    if (ctx.flag("no-probes")) next.probes = [];
    if (ctx.strings("probe").length > 0)
      next.probes = ctx.strings("probe").map((p) => parseProbe(p, Math.ceil(timeout)));
    const rto = durationOption(ctx, "rto-target");
    const rpo = durationOption(ctx, "rpo-target");
    const maxRto = durationOption(ctx, "max-rto");
    if (rto !== undefined) next.targets.rtoSeconds = rto;
    if (rpo !== undefined) next.targets.rpoSeconds = rpo;
    if (maxRto !== undefined) next.maxRtoSeconds = maxRto;
    const saved =
      JSON.stringify(next) === JSON.stringify(current)
        ? current
        : await client.putDrillSettings(host, next);
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(saved)}\n`);
    ctx.stdout.write(
      [
        `${host}: schedule ${saved.schedule}`,
        `  RTO target ${secs(saved.targets.rtoSeconds)}, RPO target ${secs(saved.targets.rpoSeconds)}, budget ${secs(saved.maxRtoSeconds)}`,
        ...saved.probes.map((p) => `  probe ${p.name} (${p.timeoutSeconds} s): ${p.command}`),
        "",
      ].join("\n"),
    );
  },
};

function isoDate(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) {
    throw usageError(
      "LB_USAGE_DATE",
      `--since ${text} is not a date.`,
      "Write it as ISO 8601: 2026-12-01 or 2026-12-01T02:00:00Z.",
    );
  }
  return date.toISOString();
}

export const reportCommand: Command = {
  path: ["report"],
  summary: "The restore drill evidence report: RTO/RPO against targets, history, failures",
  description:
    "HTML is one self-contained file (inline CSS and SVG) an auditor can open anywhere; JSON\n" +
    "has the same facts. A host token gets its own host's report.",
  options: {
    ...connectionOptions,
    host: { type: "string", value: "NAME", description: "Only this host" },
    since: { type: "string", value: "DATE", description: "Only drills since (ISO 8601)" },
    format: { type: "string", value: "html|json", description: "Default html" },
    out: { type: "string", value: "FILE", description: "Write here instead of stdout" },
  },
  examples: ["lifeboat report --since 2026-01-01 --format html --out drills.html"],
  async run(ctx) {
    const format = ctx.string("format") ?? "html";
    if (format !== "html" && format !== "json")
      throw usageError("LB_USAGE_FORMAT", `--format ${format} is not html or json.`);
    const text = await (
      await openConfiguredClient(ctx)
    ).report({
      host: ctx.string("host"),
      since: isoDate(ctx.string("since")),
      format,
    });
    const out = ctx.string("out");
    if (out) {
      await writeFile(out, text);
      ctx.stderr.write(`report written to ${out}\n`);
    } else ctx.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  },
};

export const drillCommands: Command[] = [
  drillRunCommand,
  drillListCommand,
  drillShowCommand,
  drillSettingsCommand,
  reportCommand,
];
