// lifeboat standby list | start | stop | export: warm standby ("no restore"). The server
// keeps the disks of each host's last passed drill; starting them is the fastest recovery
// there is, and its RTO is the boot time. Admin token.
import { createWriteStream, existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { usageError } from "../../../common/errors.ts";
import { formatBytes } from "../../../common/units.ts";
import { formatDuration } from "../../progress.ts";
import { connectionOptions, jsonOption, openConfiguredClient } from "../../client/connect.ts";
import type { Command } from "../command.ts";

export const standbyListCommand: Command = {
  path: ["standby", "list"],
  summary: "The kept standby images, the disk cap, and what the cap dropped (admin)",
  options: { ...connectionOptions, ...jsonOption },
  async run(ctx) {
    const state = await (await openConfiguredClient(ctx)).standbyState();
    if (ctx.json) return void ctx.stdout.write(`${JSON.stringify(state)}\n`);
    ctx.stdout.write(
      `standby images: ${formatBytes(state.usedBytes)} of a ${formatBytes(state.capBytes)} cap; each host keeps the disks of its last passed drill\n`,
    );
    for (const image of state.images) {
      ctx.stdout.write(
        `${image.host.padEnd(16)} ${formatBytes(image.bytes).padStart(10)}  drill ${image.drill}  snapshot ${image.snapshot}  kept ${image.keptAt}  ${image.firmware}${image.secureBoot ? "+secureboot" : ""}  drill RTO ${image.drillRtoSeconds === null ? "-" : formatDuration(image.drillRtoSeconds)}${image.running ? `  RUNNING (booted in ${image.bootSeconds === null ? "?" : formatDuration(image.bootSeconds)})` : ""}\n`,
      );
    }
    for (const drop of state.dropped.slice(0, 10))
      ctx.stdout.write(
        `dropped ${drop.host} (drill ${drop.drill}) at ${drop.at}: ${drop.reason}\n`,
      );
  },
};

/** HOSTPORT:GUESTPORT */
function parseForward(text: string) {
  const match = /^(\d{1,5}):(\d{1,5})$/.exec(text);
  const hostPort = Number(match?.[1]);
  const guestPort = Number(match?.[2]);
  if (!match || hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) {
    throw usageError(
      "LB_USAGE_HOSTFWD",
      `--hostfwd ${text} is not HOSTPORT:GUESTPORT.`,
      "For example --hostfwd 2222:22 (127.0.0.1:2222 on the server reaches the guest's port 22).",
    );
  }
  return { hostPort, guestPort };
}

export const standbyStartCommand: Command = {
  path: ["standby", "start"],
  summary: "Boot a host's standby image on the server; prints its boot time (its RTO)",
  description:
    "The image boots through overlays, so it stays as drilled. --net isolated (the default)\n" +
    "gives it no network; --net user gives it QEMU user networking (NAT), with --hostfwd\n" +
    "forwards from the server's loopback. It runs until 'standby stop' or the server stops.",
  options: {
    ...connectionOptions,
    net: { type: "string", value: "isolated|user", description: "Its network (default isolated)" },
    hostfwd: {
      type: "string",
      multiple: true,
      value: "HOSTPORT:GUESTPORT",
      description: "Forward 127.0.0.1:HOSTPORT to the guest (with --net user)",
    },
    ...jsonOption,
  },
  positionals: [{ name: "HOST", required: true }],
  examples: ["lifeboat standby start web1 --net user --hostfwd 2222:22 --hostfwd 8080:80"],
  async run(ctx) {
    const net = ctx.string("net") ?? "isolated";
    if (net !== "isolated" && net !== "user")
      throw usageError("LB_USAGE_NET", `--net ${net} is not isolated or user.`);
    const hostfwd = ctx.strings("hostfwd").map(parseForward);
    if (hostfwd.length > 0 && net !== "user")
      throw usageError(
        "LB_USAGE_NET",
        "--hostfwd needs --net user.",
        "An isolated VM has no network to forward into.",
      );
    const started = await (
      await openConfiguredClient(ctx)
    ).standbyStart(ctx.positionals[0]!, {
      network: net,
      hostfwd,
    });
    ctx.stdout.write(
      ctx.json
        ? `${JSON.stringify(started)}\n`
        : `standby ${started.host} is up: booted in ${formatDuration(started.bootSeconds)} (its RTO); console log ${started.consoleLog}\n`,
    );
  },
};

export const standbyStopCommand: Command = {
  path: ["standby", "stop"],
  summary: "Stop a running standby (its changes are dropped with its overlays)",
  options: { ...connectionOptions, ...jsonOption },
  positionals: [{ name: "HOST", required: true }],
  async run(ctx) {
    const result = await (await openConfiguredClient(ctx)).standbyStop(ctx.positionals[0]!);
    ctx.stdout.write(
      ctx.json
        ? `${JSON.stringify(result)}\n`
        : result.stopped
          ? "stopped\n"
          : "it was not running\n",
    );
  },
};

export const standbyExportCommand: Command = {
  path: ["standby", "export"],
  summary: "Copy a host's standby disks out, as qcow2 or raw, for another hypervisor",
  options: {
    ...connectionOptions,
    format: { type: "string", value: "qcow2|raw", description: "Disk format (default qcow2)" },
    out: { type: "string", value: "DIR", description: "An empty or new directory" },
    ...jsonOption,
  },
  positionals: [{ name: "HOST", required: true }],
  examples: ["lifeboat standby export web1 --format raw --out /srv/handover/web1"],
  async run(ctx) {
    const format = ctx.string("format") ?? "qcow2";
    if (format !== "qcow2" && format !== "raw")
      throw usageError("LB_USAGE_FORMAT", `--format ${format} is not qcow2 or raw.`);
    const out = ctx.requireString("out");
    if (existsSync(out) && readdirSync(out).length > 0)
      throw usageError(
        "LB_EXPORT_NOT_EMPTY",
        `${out} is not empty.`,
        "Give a new or empty directory.",
      );
    mkdirSync(out, { recursive: true });
    const client = await openConfiguredClient(ctx);
    const host = ctx.positionals[0]!;
    const { files } = await client.standbyExport(host, format);
    for (const file of files) {
      await client.standbyDownload(host, file.name, createWriteStream(path.join(out, file.name)));
      if (!ctx.json) ctx.stderr.write(`${file.name}: ${formatBytes(file.bytes)}\n`);
    }
    if (ctx.json) ctx.stdout.write(`${JSON.stringify({ dir: out, files })}\n`);
    else ctx.stdout.write(`${out}: ${files.map((f) => f.name).join(", ")}\n`);
  },
};

export const standbyCommands: Command[] = [
  standbyListCommand,
  standbyStartCommand,
  standbyStopCommand,
  standbyExportCommand,
];
