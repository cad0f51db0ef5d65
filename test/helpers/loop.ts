// Disk images on loop devices for integration tests (root only). There is no udev on the
// build machines: partition nodes come from partx, and everything is torn down in reverse.
import { execa } from "execa";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface LoopDisk {
  image: string;
  device: string;
  partition(n: number): string;
}

export class Scratch {
  readonly dir: string;
  private readonly loops: LoopDisk[] = [];
  private readonly mounts: string[] = [];

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(): Promise<Scratch> {
    return new Scratch(await mkdtemp(path.join(os.tmpdir(), "lifeboat-test-")));
  }

  async image(name: string, sizeBytes: number, sfdiskScript?: string): Promise<string> {
    const file = path.join(this.dir, name);
    await writeFile(file, "");
    await truncate(file, sizeBytes);
    if (sfdiskScript) await sh(["sfdisk", "-q", file], sfdiskScript);
    return file;
  }

  async attach(image: string): Promise<LoopDisk> {
    const { stdout } = await sh(["losetup", "-f", "--show", image]);
    const device = stdout.trim();
    const disk: LoopDisk = { image, device, partition: (n) => `${device}p${n}` };
    this.loops.push(disk);
    await sh(["partx", "-a", device]).catch(() => undefined);
    return disk;
  }

  async detach(disk: LoopDisk) {
    await sh(["partx", "-d", disk.device]).catch(() => undefined);
    await sh(["losetup", "-d", disk.device]);
    this.loops.splice(this.loops.indexOf(disk), 1);
  }

  async mount(device: string, name: string, options: string[] = []): Promise<string> {
    const target = path.join(this.dir, "mnt", name);
    await sh(["mkdir", "-p", target]);
    await sh(["mount", ...options, device, target]);
    this.mounts.push(target);
    return target;
  }

  async unmountAll() {
    for (const target of this.mounts.splice(0).reverse()) {
      await sh(["umount", "-R", target]).catch(() => undefined);
    }
  }

  /** Unmount everything under a directory (a restore's target root). */
  async unmountTree(root: string) {
    const { stdout } = await sh(["findmnt", "-rn", "-o", "TARGET"]);
    const under = stdout.split("\n").filter((t) => t === root || t.startsWith(`${root}/`));
    for (const target of under.sort().reverse())
      await sh(["umount", target]).catch(() => undefined);
  }

  async cleanup() {
    await this.unmountAll();
    await this.unmountTree(this.dir);
    for (const disk of [...this.loops].reverse()) await this.detach(disk).catch(() => undefined);
    // Forget btrfs devices that no longer exist, so the next test's same-UUID copy mounts.
    await sh(["btrfs", "device", "scan", "--forget"]).catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

export async function sh(argv: string[], input?: string) {
  return execa(argv[0]!, argv.slice(1), {
    input,
    env: { LC_ALL: "C", LVM_SUPPRESS_FD_WARNINGS: "1" },
  });
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}
