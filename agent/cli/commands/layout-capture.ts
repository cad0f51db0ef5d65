// lifeboat layout capture [--disk DEV ...] [--out FILE] [--luks-headers DIR]
import { createHash } from "node:crypto";
import { mkdir, readFile, realpath } from "node:fs/promises";
import path from "node:path";
import { environmentError, inputError } from "../../../common/errors.ts";
import { runTool } from "../../../common/exec.ts";
import { writeFileAtomic } from "../../../common/fs.ts";
import { LIFEBOAT_VERSION } from "../../../common/version.ts";
import { captureLayout } from "../../../layouts/capture/capture.ts";
import { serializeLayout } from "../../../layouts/document.ts";
import type { Layout } from "../../../layouts/schema.ts";
import { liveSource } from "../../capture/live-source.ts";
import type { Command } from "../command.ts";

export const layoutCaptureCommand: Command = {
  path: ["layout", "capture"],
  summary: "Capture this machine's disk layout, boot setup and identity as JSON",
  description:
    "Runs lsblk, sfdisk, blkid, findmnt, lvm, mdadm, cryptsetup, efibootmgr and the filesystem\n" +
    "tools, and writes a validated layout document. The raw tool output is kept inside it.\n" +
    "Needs root. Without --out, the document goes to standard output.",
  options: {
    disk: {
      type: "string",
      multiple: true,
      value: "DEV",
      description: "Capture only this whole disk and what is on it (loop devices included)",
    },
    out: { type: "string", value: "FILE", description: "Write the document here (atomically)" },
    "luks-headers": {
      type: "string",
      value: "DIR",
      description: "Also save a LUKS header backup per encrypted device into DIR",
    },
  },
  examples: [
    "lifeboat layout capture --out /var/lib/lifeboat/layout.json",
    "lifeboat layout capture --disk /dev/loop0",
  ],
  async run(ctx) {
    requireRoot("capture");
    const disks = await Promise.all(ctx.strings("disk").map(resolveDevice));
    const layout = await captureLayout(liveSource, {
      disks,
      now: new Date(),
      capturedBy: `lifeboat ${LIFEBOAT_VERSION}`,
    });
    const headerDir = ctx.string("luks-headers");
    if (headerDir) await saveLuksHeaders(layout, headerDir);
    for (const warning of layout.warnings) ctx.stderr.write(`lifeboat: warning: ${warning}\n`);
    const out = ctx.string("out");
    if (out) await writeFileAtomic(out, serializeLayout(layout));
    else ctx.stdout.write(serializeLayout(layout));
  },
};

export function requireRoot(what: string) {
  if (process.getuid?.() !== 0) {
    throw environmentError(
      "LB_NOT_ROOT",
      `Layout ${what} reads and writes block devices and needs root.`,
      "Run it as root, e.g. with sudo.",
    );
  }
}

/** A device argument as its kernel path (/dev/disk/by-id/... links are followed). */
export async function resolveDevice(device: string): Promise<string> {
  try {
    return await realpath(device);
  } catch {
    throw inputError(
      "LB_DISK_NOT_FOUND",
      `No block device ${device}.`,
      "Check the name with lsblk; pass whole disks such as /dev/vda or /dev/loop0.",
    );
  }
}

async function saveLuksHeaders(layout: Layout, dir: string) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const luks of layout.luks) {
    const file = path.join(dir, `luks-header-${luks.uuid}.img`);
    await runTool(["cryptsetup", "luksHeaderBackup", luks.device, "--header-backup-file", file]);
    const data = await readFile(file);
    luks.headerBackup = {
      file: path.basename(file),
      sha256: createHash("sha256").update(data).digest("hex"),
      sizeBytes: data.length,
    };
  }
}
