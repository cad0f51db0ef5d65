// The capture source for the running machine: real tools (LC_ALL=C, through execa), real
// files, and the hardware inventory from systeminformation.

import { mkdtemp, open, readdir, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { findTool, runTool } from "../../common/exec.ts";
import { OUTPUT_FILE, type CaptureSource, type FileEntry } from "../../layouts/capture/source.ts";

const TOOL_TIMEOUT_MS = 60_000;

async function run(argv: string[]) {
  if (findTool(argv[0]!) === undefined) return null;
  // LVM warns about inherited file descriptors on stderr; that is noise here.
  return runTool(argv, {
    allowFailure: true,
    timeoutMs: TOOL_TIMEOUT_MS,
    env: { LVM_SUPPRESS_FD_WARNINGS: "1" },
  });
}

export const liveSource: CaptureSource = {
  run,

  async runWithOutputFile(argv) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "lifeboat-capture-"));
    try {
      const file = path.join(dir, "out");
      const result = await run(argv.map((arg) => (arg === OUTPUT_FILE ? file : arg)));
      if (result === null) return null;
      const content = await readFile(file, "utf8").catch(() => "");
      return { ...result, stdout: content };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },

  async readFile(file) {
    try {
      return await readFile(file, "utf8");
    } catch {
      return null;
    }
  },

  async readBinary(file, length) {
    let handle;
    try {
      handle = await open(file, "r");
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, 0);
      return new Uint8Array(buffer.subarray(0, bytesRead));
    } catch {
      return null;
    } finally {
      await handle?.close();
    }
  },

  async listFiles(dir) {
    try {
      const entries = await readdir(dir, { recursive: true, withFileTypes: true });
      const out: FileEntry[] = [];
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const full = path.join(entry.parentPath, entry.name);
        out.push({ path: path.relative(dir, full), sizeBytes: (await stat(full)).size });
      }
      return out.sort((a, b) => a.path.localeCompare(b.path));
    } catch {
      return null;
    }
  },

  async hardware() {
    // Loaded on demand: only layout capture needs the hardware inventory.
    const { default: si } = await import("systeminformation");
    const [system, baseboard, cpu, mem] = await Promise.all([
      si.system(),
      si.baseboard(),
      si.cpu(),
      si.mem(),
    ]);
    return {
      system: {
        manufacturer: system.manufacturer,
        model: system.model,
        serial: system.serial,
        virtual: system.virtual,
      },
      baseboard: { manufacturer: baseboard.manufacturer, model: baseboard.model },
      cpu: {
        manufacturer: cpu.manufacturer,
        brand: cpu.brand,
        cores: cpu.cores,
        physicalCores: cpu.physicalCores,
      },
      mem: { total: mem.total },
    };
  },
};
