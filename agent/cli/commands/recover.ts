// lifeboat recover: the recovery engine's command, run inside the rescue system. Settings
// come from flags, then the kernel command line (lifeboat.*, see rescue/recover/cmdline.ts),
// then what the rescue image carries under /etc/lifeboat.

import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline/promises";
import { inputError, usageError } from "../../../common/errors.ts";
import { loadKeyFile } from "../../../common/repository/keys.ts";
import { readLayoutFile } from "../../../layouts/document.ts";
import { parseCmdline, type RescueCmdline } from "../../../rescue/recover/cmdline.ts";
import { DrillSpecSchema, type DrillSpec } from "../../../rescue/recover/drill-check.ts";
import { RecoveryLog } from "../../../rescue/recover/log.ts";
import { RESCUE_PATHS } from "../../../rescue/contract.ts";
import { runRecovery } from "../../../rescue/recover/recover.ts";
import { connectionOptions } from "../../client/connect.ts";
import { ApiClient } from "../../client/api.ts";
import { loadAgentConfig, resolveConnection, type AgentConfig } from "../../config.ts";
import { openDirectorySource } from "../../client/local.ts";
import type { Command, CommandContext } from "../command.ts";
import { requireRoot } from "./layout-capture.ts";
import { DEFAULT_TARGET_ROOT } from "./layout-plan.ts";

/** Where the rescue builder puts the host's data (rescue/build.ts writes the same paths). */
export const RESCUE_ETC = "/etc/lifeboat";

function pairs(values: string[], flag: string, example: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const index = value.indexOf("=");
    if (index <= 0 || index === value.length - 1) {
      throw usageError(
        "LB_USAGE",
        `--${flag} ${value}: expected NAME=VALUE, e.g. --${flag} ${example}.`,
      );
    }
    out[value.slice(0, index)] = value.slice(index + 1);
  }
  return out;
}

/** LUKS passphrase files the rescue image carries: /etc/lifeboat/luks/NAME. */
function embeddedLuksKeys(dir: string): Record<string, string> {
  const luksDir = path.join(dir, "luks");
  if (!existsSync(luksDir)) return {};
  return Object.fromEntries(readdirSync(luksDir).map((name) => [name, path.join(luksDir, name)]));
}

async function readCmdline(ctx: CommandContext): Promise<RescueCmdline> {
  if (ctx.flag("no-cmdline")) return parseCmdline("");
  const text = await readFile("/proc/cmdline", "utf8").catch(() => "");
  return parseCmdline(text);
}

export const recoverCommand: Command = {
  path: ["recover"],
  summary: "Rebuild this machine from a snapshot: disks, data, bootloader (in the rescue system)",
  description:
    "Finds the host's newest snapshot on the server (or --snapshot), maps the captured disks to\n" +
    "this machine's, wipes old signatures, recreates partitions, md, LUKS, LVM and filesystems\n" +
    "with their original UUIDs, restores every filesystem, fixes identifiers that changed,\n" +
    "rebuilds the initramfs when needed and installs the bootloader (BIOS: GRUB on every boot\n" +
    "disk; UEFI: GRUB on the ESP, the removable fallback path and the firmware's boot entries).\n" +
    "Interactive mode shows the plan and asks once; --auto (or lifeboat.mode=auto on the kernel\n" +
    "command line) never asks. Every step can be rerun; finished layout steps are skipped.",
  options: {
    ...connectionOptions,
    auto: { type: "boolean", description: "No prompts at all (also lifeboat.mode=auto)" },
    snapshot: {
      type: "string",
      value: "ID",
      description: "Recover this snapshot (default: newest)",
    },
    layout: {
      type: "string",
      value: "FILE",
      description: `Layout to use if the snapshot has none (default ${RESCUE_ETC}/layout.json)`,
    },
    config: {
      type: "string",
      value: "FILE",
      description: `Agent config with server, token and key (default ${RESCUE_ETC}/agent.json)`,
    },
    "key-file": {
      type: "string",
      value: "FILE",
      description: "The repository key (default: keyFile in the config)",
    },
    map: {
      type: "string",
      multiple: true,
      value: "OLD=NEW",
      description: "Put the layout's disk OLD on this machine's disk NEW",
    },
    "luks-key": {
      type: "string",
      multiple: true,
      value: "NAME=FILE",
      description: "LUKS passphrase file (mapper name or UUID; '*' for all)",
    },
    "luks-key-url": {
      type: "string",
      multiple: true,
      value: "NAME=URL",
      description: "Fetch a LUKS passphrase from a key server",
    },
    "target-root": {
      type: "string",
      value: "DIR",
      description: `Where the recovered tree is mounted (default ${DEFAULT_TARGET_ROOT})`,
    },
    from: {
      type: "string",
      value: "DIR",
      description:
        "Recover without a server: from an exported snapshot (e.g. the one on the rescue medium) or a server's data directory",
    },
    drill: {
      type: "boolean",
      description: `A restore drill: leave the one-shot drill check (spec in ${RESCUE_ETC}/drill.json)`,
    },
    "no-cmdline": { type: "boolean", description: "Ignore lifeboat.* on the kernel command line" },
    verbose: { type: "boolean", description: "Show every tool's output as it runs" },
    json: { type: "boolean", description: "Print the result (steps, timings) as JSON" },
  },
  examples: [
    "lifeboat recover",
    "lifeboat recover --auto --snapshot 0193a5c3e0f2b8d4a1c7e9f06b2d",
    "lifeboat recover --auto --map /dev/vda=/dev/nvme0n1 --luks-key cr_root=/media/usb/key",
  ],
  async run(ctx) {
    requireRoot("recovery");
    const cmdline = await readCmdline(ctx);
    const auto = ctx.flag("auto") || cmdline.mode === "auto";
    // The rescue image's config sits where the agent's does (/etc/lifeboat/agent.json).
    const config = await loadAgentConfig(ctx.string("config"));
    const from = ctx.string("from") ?? cmdline.from ?? undefined;
    const client = from
      ? await openDirectorySource(from)
      : await serverClient(ctx, cmdline, config);
    const keyFile = ctx.string("key-file") ?? config?.keyFile;
    const keys = keyFile ? (await loadKeyFile(keyFile)).keys : null;
    const layoutFile = ctx.string("layout") ?? `${RESCUE_ETC}/layout.json`;
    const fallbackLayout = existsSync(layoutFile) ? await readLayoutFile(layoutFile) : null;
    if (ctx.string("layout") && !fallbackLayout) {
      throw inputError("LB_RECOVER_LAYOUT", `The layout file ${layoutFile} does not exist.`);
    }
    const stateDir = process.env.LIFEBOAT_STATE_DIR || "/run/lifeboat";
    const log = new RecoveryLog(ctx.stderr, path.join(stateDir, "recover.log"));
    const interactive = !auto && process.stdin.isTTY;
    if (!auto && !interactive) {
      throw usageError(
        "LB_RECOVER_NO_TTY",
        "Interactive recovery needs a terminal to ask on, and standard input is not one.",
        "Run it on the console, or pass --auto (or lifeboat.mode=auto) to recover without asking.",
      );
    }
    const result = await runRecovery({
      auto,
      client,
      keys,
      host: config?.host ?? null,
      snapshot: ctx.string("snapshot") ?? cmdline.snapshot,
      fallbackLayout,
      maps: { ...cmdline.maps, ...pairs(ctx.strings("map"), "map", "/dev/vda=/dev/nvme0n1") },
      keyFiles: {
        ...embeddedLuksKeys(RESCUE_ETC),
        ...cmdline.keyFiles,
        ...pairs(ctx.strings("luks-key"), "luks-key", "cr_root=/root/key"),
      },
      keyUrls: {
        ...cmdline.keyUrls,
        ...pairs(ctx.strings("luks-key-url"), "luks-key-url", "cr_root=https://keys/cr_root"),
      },
      targetRoot: path.resolve(ctx.string("target-root") ?? DEFAULT_TARGET_ROOT),
      stateDir,
      console: ctx.stderr,
      log,
      verbose: ctx.flag("verbose"),
      drill: ctx.flag("drill") || cmdline.drill ? await readDrillSpec() : null,
      ask: interactive ? askLine : undefined,
      askSecret: interactive ? askHidden : undefined,
    });
    if (ctx.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      ctx.stdout.write(
        `recovered ${result.host} from snapshot ${result.snapshot} in ${result.seconds.toFixed(0)} s` +
          `${result.logFile ? `; log at ${result.logFile} on the recovered system` : ""}\n`,
      );
    }
  },
};

async function serverClient(
  ctx: CommandContext,
  cmdline: RescueCmdline,
  config: AgentConfig | null,
): Promise<ApiClient> {
  const connection = await resolveConnection({
    flags: {
      server: ctx.string("server") ?? cmdline.server ?? undefined,
      token: ctx.string("token"),
      tokenFile: ctx.string("token-file"),
      ca: ctx.string("ca"),
    },
    config,
  });
  return new ApiClient(connection.server, connection.token, { ca: connection.ca });
}

/** The drill's probes and sampled files, from the rescue image; none is an empty check. */
async function readDrillSpec(): Promise<DrillSpec> {
  const file = RESCUE_PATHS.drillSpec;
  if (!existsSync(file)) return DrillSpecSchema.parse({});
  const parsed = DrillSpecSchema.safeParse(JSON.parse(await readFile(file, "utf8")));
  if (!parsed.success) {
    throw inputError(
      "LB_DRILL_SPEC",
      `${file} is not a valid drill spec: ${parsed.error.issues[0]?.message}.`,
      "The drill orchestrator writes it; rebuild the drill's rescue image.",
    );
  }
  return parsed.data;
}

/** One line from the terminal; the reader is closed again so a hidden prompt can follow. */
async function askLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Reads a line from the terminal without echoing it. */
async function askHidden(question: string): Promise<string> {
  process.stderr.write(question);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  try {
    let typed = "";
    for await (const data of stdin) {
      for (const char of String(data)) {
        if (char === "\r" || char === "\n") return typed;
        if (char === "\u0003") {
          throw usageError("LB_RECOVER_DECLINED", "Stopped at the passphrase prompt.");
        }
        typed = char === "\u007f" ? typed.slice(0, -1) : typed + char;
      }
    }
    return typed;
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write("\n");
  }
}

export const recoverCommands: Command[] = [recoverCommand];
