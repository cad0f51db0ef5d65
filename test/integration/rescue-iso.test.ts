// Builds a real rescue ISO (and PXE files) with Debian's cloud kernel and looks inside:
// the ISO's boot structure and label, the initramfs listing and the host data at the paths
// the recovery engine reads. Also: a failing grub-mkrescue leaves no ISO and no temp files.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentConfigSchema } from "../../agent/config.ts";
import { buildRescueImage, type RescueBuildResult } from "../../rescue/build.ts";
import {
  EMBEDDED_SNAPSHOT_MOUNTED,
  RESCUE_VOLUME_ID,
  RescueInfoSchema,
} from "../../rescue/contract.ts";
import { ensureDebianKernel, type DebianKernel } from "../../vm-tests/lib/debian-kernel.ts";

const LAYOUT = path.join(import.meta.dirname, "..", "fixtures", "vm", "c-raid1-luks-lvm-xfs.json");
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-rescue-iso-"));
let kernel: DebianKernel;
let result: RescueBuildResult;
const iso = path.join(work, "out", "rescue.iso");
const pxe = path.join(work, "pxe");
const tree = path.join(work, "initrd");

// The builder's work directories go under os.tmpdir(); point it at a private directory
// so the test can see that nothing is left behind.
const privateTmp = path.join(work, "tmp");
const lifeboatTemps = () => readdirSync(privateTmp);
async function withPrivateTmp<T>(body: () => Promise<T>): Promise<T> {
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = privateTmp;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

beforeAll(async () => {
  kernel = await ensureDebianKernel();
  mkdirSync(path.join(work, "out"));
  mkdirSync(privateTmp);
  mkdirSync(path.join(work, "etc"));
  writeFileSync(path.join(work, "etc", "host.token"), "host-token-123\n");
  writeFileSync(path.join(work, "etc", "repo.key"), "repo-key-material\n");
  writeFileSync(path.join(work, "etc", "cr_root.key"), "passphrase\n");
  writeFileSync(
    path.join(work, "etc", "agent.json"),
    JSON.stringify({
      server: "http://10.0.2.2:8450",
      tokenFile: "host.token",
      keyFile: path.join(work, "etc", "repo.key"),
      host: "fixture-c",
      stateDir: "/var/lib/lifeboat",
    }),
  );
  result = await withPrivateTmp(() =>
    buildRescueImage({
      out: iso,
      pxeDir: pxe,
      kernel: kernel.vmlinuz,
      modules: kernel.modulesDir,
      layoutFile: LAYOUT,
      configFile: path.join(work, "etc", "agent.json"),
      luksKeys: { cr_root: path.join(work, "etc", "cr_root.key") },
      addModules: ["loop", "dm-raid"],
      defaultEntry: "auto",
      cmdline: "lifeboat.after=poweroff",
    }),
  );
  expect(lifeboatTemps()).toEqual([]);
  mkdirSync(tree);
  execFileSync("bash", [
    "-c",
    'xorriso -osirrox on -indev "$1" -extract /boot/initrd.zst "$2/../initrd.zst" 2>/dev/null && cd "$2" && zstd -dc ../initrd.zst | cpio -idm --quiet',
    "x",
    iso,
    tree,
  ]);
}, 300_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the rescue ISO", () => {
  it("meets the size and build-time targets and is private", () => {
    const stat = statSync(iso);
    expect(result.iso).toEqual({ path: iso, sizeBytes: stat.size });
    expect(stat.size).toBeLessThanOrEqual(100e6);
    expect(stat.mode & 0o777).toBe(0o600);
    expect(result.seconds.total).toBeLessThan(60);
    expect(readdirSync(path.join(work, "out"))).toEqual(["rescue.iso"]);
    expect(result.secrets).toEqual([
      "the host token",
      "the repository key",
      "the LUKS passphrase for cr_root",
    ]);
  });

  it("is a hybrid El Torito ISO for BIOS and UEFI, labelled for the planner's safety check", () => {
    const probe = execFileSync("blkid", ["-p", "-o", "export", iso], { encoding: "utf8" });
    expect(probe).toContain("TYPE=iso9660");
    expect(probe).toContain(`LABEL=${RESCUE_VOLUME_ID}`);
    // The partition table that makes it bootable from a USB stick.
    expect(probe).toMatch(/PTTYPE=(gpt|dos)/);
    const report = execFileSync("xorriso", ["-indev", iso, "-report_el_torito", "plain"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    expect(report).toMatch(/El Torito boot img :\s+1\s+BIOS/);
    expect(report).toMatch(/El Torito boot img :\s+2\s+UEFI/);
    const files = execFileSync("xorriso", ["-indev", iso, "-find", "/", "-type", "f"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    for (const file of [
      "/boot/vmlinuz",
      "/boot/initrd.zst",
      "/boot/grub/grub.cfg",
      "/boot/grub/i386-pc/eltorito.img",
      "/efi.img",
    ]) {
      expect(files).toContain(`'${file}'`);
    }
    const cfgFile = path.join(work, "grub.cfg");
    execFileSync(
      "xorriso",
      ["-osirrox", "on", "-indev", iso, "-extract", "/boot/grub/grub.cfg", cfgFile],
      {
        stdio: "ignore",
      },
    );
    const cfg = readFileSync(cfgFile, "utf8");
    expect(cfg).toMatch(/^set default=auto$/m);
    expect(cfg).toContain("lifeboat.mode=auto lifeboat.after=poweroff");
  });

  it("holds the tools, Node, the CLI and the modules recovery needs", () => {
    for (const file of [
      "init",
      "usr/bin/busybox",
      "usr/bin/bash",
      "usr/bin/tar",
      "usr/sbin/mdadm",
      "usr/sbin/lvm",
      "usr/sbin/cryptsetup",
      "usr/sbin/mkfs.xfs",
      "usr/sbin/mkfs.ext4",
      "usr/sbin/mkfs.btrfs",
      "usr/sbin/mkfs.fat",
      "usr/sbin/sfdisk",
      "usr/sbin/grub-install",
      "usr/lib/grub/i386-pc/boot.img",
      "usr/lib/grub/x86_64-efi/linux.mod",
      "usr/lib/lifeboat/node.zst",
      "usr/lib/lifeboat/lifeboat.mjs",
      "usr/bin/zstd",
      "usr/bin/lifeboat",
      "usr/share/lifeboat/udhcpc.script",
      "etc/lvm/lvm.conf",
      "lib64/ld-linux-x86-64.so.2",
    ]) {
      expect(existsSync(path.join(tree, file)), file).toBe(true);
    }
    expect(
      execFileSync("readlink", [path.join(tree, "usr/sbin/vgcreate")], { encoding: "utf8" }).trim(),
    ).toBe("lvm");
    expect(readFileSync(path.join(tree, "etc/lvm/lvm.conf"), "utf8")).toContain("udev_sync = 0");
    // Node travels compressed (the init unpacks it), so only the .zst is there.
    expect(existsSync(path.join(tree, "usr/lib/lifeboat/node"))).toBe(false);
    // Disks, NICs and the medium load before the prompt; md, dm, filesystems and crypto after.
    const order = readFileSync(path.join(tree, "etc/modules.load-order"), "utf8");
    const later = readFileSync(path.join(tree, "etc/modules.load-later"), "utf8");
    for (const module of ["virtio_blk.ko", "virtio_net.ko", "loop.ko", "isofs.ko"]) {
      expect(order).toContain(`/${module}`);
      expect(later).not.toContain(`/${module}`);
    }
    for (const module of ["dm-crypt.ko", "dm-thin-pool.ko", "raid1.ko", "xfs.ko"]) {
      expect(later).toContain(`/${module}`);
      expect(order).not.toContain(`/${module}`);
    }
    // --add-module dm-raid loads before the prompt, with its dependencies ahead of it, and
    // what it brought is not loaded twice.
    expect(order).toContain("/dm-raid.ko");
    expect(order.indexOf("/dm-mod.ko")).toBeGreaterThanOrEqual(0);
    expect(order.indexOf("/dm-mod.ko")).toBeLessThan(order.indexOf("/dm-raid.ko"));
    expect(later).not.toContain("/dm-mod.ko");
    expect(result.modules.builtin).toContain("ext4");
    expect(result.modules.absent).toContain("ahci");
  });

  it("carries the host's data at the paths the recovery engine reads", () => {
    const etc = path.join(tree, "etc", "lifeboat");
    const config = AgentConfigSchema.parse(
      JSON.parse(readFileSync(path.join(etc, "agent.json"), "utf8")),
    );
    expect(config.server).toBe("http://10.0.2.2:8450");
    expect(config.tokenFile).toBe("/etc/lifeboat/token");
    expect(config.keyFile).toBe("/etc/lifeboat/repo.key");
    expect(config.stateDir).toBeUndefined();
    expect(readFileSync(path.join(etc, "token"), "utf8")).toBe("host-token-123\n");
    expect(readFileSync(path.join(etc, "repo.key"), "utf8")).toBe("repo-key-material\n");
    expect(readFileSync(path.join(etc, "luks", "cr_root"), "utf8")).toBe("passphrase\n");
    expect(statSync(path.join(etc, "token")).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path.join(etc, "layout.json"), "utf8"))).toEqual(
      JSON.parse(readFileSync(LAYOUT, "utf8")),
    );
    const info = RescueInfoSchema.parse(
      JSON.parse(readFileSync(path.join(etc, "rescue.json"), "utf8")),
    );
    expect(info.kernelVersion).toBe(kernel.version);
    expect(info.host).toBe("fixture-c");
  });

  it("runs: the image's node, unpacked as the init does, starts the bundled CLI", () => {
    const node = path.join(tree, "usr/lib/lifeboat/node");
    execFileSync(path.join(tree, "usr/bin/zstd"), ["-d", "-q", "-o", node, `${node}.zst`], {
      env: { LD_LIBRARY_PATH: path.join(tree, "usr/lib/x86_64-linux-gnu") },
    });
    // The running Node without its symbol tables.
    expect(statSync(node).size).toBeLessThan(statSync(process.execPath).size - 10e6);
    expect(execFileSync("readelf", ["-S", "-W", node], { encoding: "utf8" })).not.toMatch(
      / \.symtab /,
    );
    // The image's own loader and libraries, not the host's.
    const out = execFileSync(
      path.join(tree, "lib64/ld-linux-x86-64.so.2"),
      [
        "--library-path",
        path.join(tree, "usr/lib/x86_64-linux-gnu"),
        path.join(tree, "usr/lib/lifeboat/node"),
        path.join(tree, "usr/lib/lifeboat/lifeboat.mjs"),
        "recover",
        "--help",
      ],
      { encoding: "utf8" },
    );
    expect(out).toContain("Usage: lifeboat recover");
  });

  it("writes PXE files: kernel, initrd (private) and boot configs", () => {
    expect(statSync(path.join(pxe, "vmlinuz")).size).toBe(statSync(kernel.vmlinuz).size);
    expect(statSync(path.join(pxe, "initrd.zst")).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(pxe, "initrd.zst")).size).toBe(result.initramfsBytes);
    expect(readFileSync(path.join(pxe, "pxelinux.cfg", "default"), "utf8")).toContain(
      "DEFAULT auto",
    );
    expect(readFileSync(path.join(pxe, "grub.cfg"), "utf8")).toContain("linux ($root)/vmlinuz");
    expect(readFileSync(path.join(pxe, "boot.ipxe"), "utf8")).toMatch(
      /^#!ipxe\n[^]*--default auto[^]*\nkernel vmlinuz initrd=initrd\.zst /,
    );
    expect(result.pxe?.files.map((f) => path.relative(pxe, f))).toContain("boot.ipxe");
  });
});

describe("a failed build", () => {
  it("leaves no ISO, no temp file and no work directory", async () => {
    const bin = path.join(work, "fakebin");
    mkdirSync(bin);
    const fake = path.join(bin, "grub-mkrescue");
    // Writes half an ISO, then fails, as a full disk would.
    writeFileSync(
      fake,
      '#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done\nhead -c 1000000 /dev/zero > "$2"\necho "no space left" >&2\nexit 1\n',
    );
    chmodSync(fake, 0o755);
    const out = path.join(work, "failed", "rescue.iso");
    mkdirSync(path.dirname(out));
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath}`;
    try {
      await expect(
        withPrivateTmp(() =>
          buildRescueImage({
            out,
            kernel: kernel.vmlinuz,
            modules: kernel.modulesDir,
            layoutFile: LAYOUT,
            configFile: null,
          }),
        ),
      ).rejects.toThrow(/grub-mkrescue.*no space left/);
    } finally {
      process.env.PATH = savedPath;
    }
    expect(readdirSync(path.dirname(out))).toEqual([]);
    expect(lifeboatTemps()).toEqual([]);
  }, 120_000);
});

describe("a rescue ISO with an embedded snapshot", () => {
  it("carries the export under its full names and tells the rescue system where it is", async () => {
    const exported = path.join(work, "export");
    const chunk = "ab".repeat(32);
    mkdirSync(path.join(exported, "chunks"), { recursive: true });
    writeFileSync(path.join(exported, "chunks", chunk), "blob");
    writeFileSync(path.join(exported, "manifest"), "manifest");
    writeFileSync(path.join(exported, "export.json"), "{}");
    const out = path.join(work, "out", "embedded.iso");
    const built = await buildRescueImage({
      out,
      kernel: kernel.vmlinuz,
      modules: kernel.modulesDir,
      layoutFile: LAYOUT,
      configFile: null,
      embedDir: exported,
      defaultEntry: "auto",
    });
    expect(built.cmdline).toContain(`lifeboat.from=${EMBEDDED_SNAPSHOT_MOUNTED}`);
    const files = execFileSync("xorriso", ["-indev", out, "-find", "/lifeboat", "-type", "f"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    expect(files).toContain(`/lifeboat/snapshot/chunks/${chunk}`);
    expect(files).toContain("/lifeboat/snapshot/export.json");
    const grubFile = path.join(work, "embedded-grub.cfg");
    execFileSync(
      "xorriso",
      ["-osirrox", "on", "-indev", out, "-extract", "/boot/grub/grub.cfg", grubFile],
      {
        stdio: "ignore",
      },
    );
    const grub = readFileSync(grubFile, "utf8");
    expect(grub).toContain(`lifeboat.from=${EMBEDDED_SNAPSHOT_MOUNTED}`);
  }, 300_000);
});
