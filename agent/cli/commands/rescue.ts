// lifeboat rescue build: this host's bootable rescue ISO (and/or PXE files). See rescue/build.ts.

import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { environmentError, inputError, usageError } from "../../../common/errors.ts";
import { loadKeyFile } from "../../../common/repository/keys.ts";
import { LIFEBOAT_VERSION } from "../../../common/version.ts";
import { captureLayout } from "../../../layouts/capture/capture.ts";
import { buildRescueImage, DEFAULT_COMPRESSION_LEVEL } from "../../../rescue/build.ts";
import { RESCUE_ENTRIES, type RescueEntry } from "../../../rescue/grub.ts";
import { liveSource } from "../../capture/live-source.ts";
import { connectionOptions, openClient } from "../../client/connect.ts";
import { exportSnapshot } from "../../client/local.ts";
import { loadAgentConfig } from "../../config.ts";
import type { Command, CommandContext } from "../command.ts";

function luksKeys(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const index = value.indexOf("=");
    if (index <= 0 || index === value.length - 1) {
      throw usageError(
        "LB_USAGE",
        `--luks-key ${value}: expected NAME=FILE, e.g. --luks-key cr_root=/root/cr_root.key.`,
      );
    }
    out[value.slice(0, index)] = value.slice(index + 1);
  }
  return out;
}

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw usageError("LB_USAGE", `--${flag} ${value}: expected a number.`);
  return Number(value);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export const rescueBuildCommand: Command = {
  path: ["rescue", "build"],
  summary: "Build this host's rescue ISO (BIOS + UEFI, USB-writable) or PXE files",
  description:
    "The image holds a kernel (this machine's, or --kernel/--modules), the modules recovery\n" +
    "needs, busybox and the storage tools with their libraries, Node and Lifeboat, and this\n" +
    "host's layout, agent config (server, token, repository key) and --luks-key files. It\n" +
    "boots to a menu: Recover (interactive), Recover automatically, Shell.\n" +
    "--modules takes the kernel's module directory itself (…/lib/modules/VERSION).\n" +
    "The ISO holds secrets when the config has a token or key: it is written mode 0600.",
  options: {
    ...connectionOptions,
    out: { type: "string", value: "FILE.iso", description: "Write the hybrid ISO here" },
    pxe: {
      type: "string",
      value: "DIR",
      description: "Write vmlinuz, initrd.zst and boot configs here",
    },
    kernel: {
      type: "string",
      value: "VMLINUZ",
      description: "Kernel (default /boot/vmlinuz-$(uname -r))",
    },
    modules: {
      type: "string",
      value: "DIR",
      description: "Its lib/modules/VERSION directory (default /lib/modules/$(uname -r))",
    },
    layout: {
      type: "string",
      value: "FILE",
      description: "The host's captured layout (default: capture it now, needs root)",
    },
    config: {
      type: "string",
      value: "FILE",
      description: "Agent config (default LIFEBOAT_CONFIG, then /etc/lifeboat/agent.json)",
    },
    "no-config": { type: "boolean", description: "Embed no agent config (an offline image)" },
    "add-module": {
      type: "string",
      multiple: true,
      value: "NAME",
      description: "Another kernel module",
    },
    "add-program": {
      type: "string",
      multiple: true,
      value: "PATH",
      description: "Another program (with its libraries)",
    },
    "luks-key": {
      type: "string",
      multiple: true,
      value: "NAME=FILE",
      description: "Put this LUKS passphrase file in the image (mapper name or UUID)",
    },
    "default-entry": {
      type: "string",
      value: "MODE",
      description: "Menu default: interactive (default), auto or shell",
    },
    cmdline: {
      type: "string",
      value: "ARGS",
      description: "Extra kernel arguments for every entry",
    },
    timeout: { type: "string", value: "SECONDS", description: "Menu timeout (default 5)" },
    "signed-boot": {
      type: "string",
      value: "DIR",
      description: "Where Debian's signed shim and GRUB are unpacked (default: this machine's /)",
    },
    "no-secure-boot": {
      type: "boolean",
      description: "Use unsigned GRUB for UEFI (the ISO then boots only with Secure Boot off)",
    },
    "zstd-level": {
      type: "string",
      value: "N",
      description: `initramfs zstd level 1-19 (default ${DEFAULT_COMPRESSION_LEVEL})`,
    },
    embed: {
      type: "string",
      value: "SNAPSHOT",
      description: "Put this snapshot on the ISO, to recover without the server ('latest' works)",
    },
    json: { type: "boolean", description: "Print the result as JSON" },
  },
  examples: [
    "lifeboat rescue build --out /root/rescue.iso",
    "lifeboat rescue build --out rescue.iso --layout layout.json --config agent.json --luks-key cr_root=/root/cr.key",
    "lifeboat rescue build --out drill.iso --default-entry auto --cmdline 'lifeboat.after=poweroff'",
    "lifeboat rescue build --pxe /srv/tftp/lifeboat --kernel vmlinuz-6.1.0-56-amd64 --modules ./lib/modules/6.1.0-56-amd64",
  ],
  async run(ctx) {
    if (ctx.flag("no-config") && ctx.string("config") !== undefined) {
      throw usageError("LB_USAGE", "--config and --no-config contradict each other.");
    }
    const entry = ctx.string("default-entry") ?? "interactive";
    if (!(RESCUE_ENTRIES as readonly string[]).includes(entry)) {
      throw usageError(
        "LB_USAGE",
        `--default-entry ${entry}: expected ${RESCUE_ENTRIES.join(", ")}.`,
      );
    }
    const layoutFile = ctx.string("layout");
    if (layoutFile === undefined && process.getuid?.() !== 0) {
      throw environmentError(
        "LB_NOT_ROOT",
        "Without --layout the rescue builder captures this machine's layout, which needs root.",
        "Run it as root, or pass --layout FILE written by 'lifeboat layout capture'.",
      );
    }
    const progress = (line: string) => {
      if (!ctx.json) ctx.stderr.write(`lifeboat: ${line}\n`);
    };
    const embedded = ctx.string("embed")
      ? await exportForEmbedding(
          ctx,
          ctx.string("embed")!,
          ctx.flag("no-config") ? null : ctx.string("config"),
          progress,
        )
      : null;
    const result = await buildRescueImage({
      embedDir: embedded?.dir,
      signedBootRoot: ctx.flag("no-secure-boot") ? null : ctx.string("signed-boot"),
      out: ctx.string("out"),
      pxeDir: ctx.string("pxe"),
      kernel: ctx.string("kernel"),
      modules: ctx.string("modules"),
      layoutFile,
      configFile: ctx.flag("no-config") ? null : ctx.string("config"),
      addModules: ctx.strings("add-module"),
      addPrograms: ctx.strings("add-program"),
      luksKeys: luksKeys(ctx.strings("luks-key")),
      defaultEntry: entry as RescueEntry,
      cmdline: ctx.string("cmdline"),
      timeoutSeconds: integer(ctx.string("timeout"), "timeout"),
      compressionLevel: integer(ctx.string("zstd-level"), "zstd-level"),
      progress,
      captureLayout: () =>
        captureLayout(liveSource, {
          disks: [],
          now: new Date(),
          capturedBy: `lifeboat ${LIFEBOAT_VERSION}`,
        }),
    }).finally(() => embedded?.cleanup());
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    for (const warning of result.warnings) ctx.stderr.write(`lifeboat: warning: ${warning}\n`);
    const lines: string[] = [];
    if (result.iso) lines.push(`rescue ISO ${result.iso.path}: ${mb(result.iso.sizeBytes)}`);
    if (result.pxe)
      lines.push(
        `PXE files in ${result.pxe.dir}: vmlinuz, initrd.zst, pxelinux.cfg/default, grub.cfg`,
      );
    lines.push(
      `  host ${result.host ?? "(unknown)"}, kernel ${result.kernelVersion}, initramfs ${mb(result.initramfsBytes)}, ` +
        `${result.modules.loaded} modules, built in ${result.seconds.total.toFixed(1)} s`,
      `  boots to: ${result.defaultEntry}${result.cmdline.length ? ` (${result.cmdline.join(" ")})` : ""}`,
      result.iso
        ? result.secureBoot
          ? "  UEFI: signed shim and GRUB, boots with Secure Boot on or off"
          : "  UEFI: unsigned GRUB, boots only with Secure Boot off (install shim-signed and grub-efi-amd64-signed, or pass --signed-boot DIR)"
        : "",
    );
    if (result.secrets.length > 0) {
      lines.push(
        `  SECRETS inside: ${result.secrets.join(", ")}.`,
        "  Anyone who can read the image can restore this host's data: keep it like the key itself.",
      );
    }
    ctx.stdout.write(`${lines.join("\n")}\n`);
  },
};

export const rescueCommands: Command[] = [rescueBuildCommand];

/**
 * Exports the snapshot to embed into a temporary directory, with the server, token and key
 * of the same agent config the image carries. 'latest' is the host's newest snapshot.
 */
async function exportForEmbedding(
  ctx: CommandContext,
  wanted: string,
  configFile: string | null | undefined,
  progress: (line: string) => void,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const config = configFile === null ? null : await loadAgentConfig(configFile);
  const client = await openClient(ctx, config);
  const keys = config?.keyFile ? (await loadKeyFile(config.keyFile)).keys : null;
  let snapshot = wanted;
  if (wanted === "latest") {
    const list = await client.listSnapshots(config?.host);
    const newest = list.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1);
    if (!newest) {
      throw inputError(
        "LB_RESCUE_EMBED_NONE",
        "There is no snapshot to embed yet.",
        "Run 'lifeboat backup' first.",
      );
    }
    snapshot = newest.id;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "lifeboat-embed-"));
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    progress(`exporting snapshot ${snapshot} to embed it`);
    await exportSnapshot({ client, keys, snapshot, dir: path.join(dir, "snapshot") });
    return { dir: path.join(dir, "snapshot"), cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
