import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  BOOT_RESCUE_MODULES,
  DEFAULT_RESCUE_MODULES,
  LATER_RESCUE_MODULES,
  moduleNameOfPath,
  parseModuleIndex,
  resolveModuleNames,
} from "../../rescue/modules.ts";

const dir = path.join(import.meta.dirname, "..", "fixtures", "rescue");
const index = parseModuleIndex({
  dep: readFileSync(path.join(dir, "modules.dep"), "utf8"),
  builtin: readFileSync(path.join(dir, "modules.builtin"), "utf8"),
  alias: readFileSync(path.join(dir, "modules.alias"), "utf8"),
});

describe("moduleNameOfPath", () => {
  it("takes the file name, normalizes dashes, accepts compressed modules", () => {
    expect(moduleNameOfPath("kernel/drivers/md/dm-mod.ko")).toBe("dm_mod");
    expect(moduleNameOfPath("kernel/fs/nls/nls_iso8859-1.ko.xz")).toBe("nls_iso8859_1");
    expect(moduleNameOfPath("kernel/fs/xfs/xfs.ko.zst")).toBe("xfs");
    expect(moduleNameOfPath("modules.order")).toBeUndefined();
  });
});

describe("resolveModuleNames on Debian's cloud kernel", () => {
  it("loads modules, skips built-ins and reports absent names", () => {
    const result = resolveModuleNames(
      ["virtio_blk", "dm-crypt", "ext4", "nvme", "ahci", "e1000e", "xfs"],
      index,
    );
    expect(result.load).toEqual(["virtio_blk", "dm_crypt", "xfs"]);
    expect(result.builtin).toEqual(["ext4", "nvme"]);
    expect(result.missing).toEqual(["ahci", "e1000e"]);
  });

  it("treats - and _ alike and drops duplicates", () => {
    const result = resolveModuleNames(
      ["dm_mod", "dm-mod", "nls_iso8859-1", "nls_iso8859_1"],
      index,
    );
    expect(result.load).toEqual(["dm_mod", "nls_iso8859_1"]);
  });

  it("resolves aliases to the module that provides them", () => {
    const result = resolveModuleNames(["crypto-aes", "md-raid1", "fs-xfs", "xfs"], index);
    expect(result.load).toEqual(["aesni_intel", "raid1", "xfs"]);
    expect(result.missing).toEqual([]);
  });

  it("an alias whose module this kernel lacks is absent", () => {
    // sha256 points at sha256_ssse3, which is not in the recorded modules.dep excerpt.
    expect(resolveModuleNames(["sha256"], index).missing).toEqual(["sha256"]);
  });

  it("the default list covers storage, md, dm, filesystems, crypto, network and efivarfs", () => {
    for (const name of ["virtio_blk", "nvme", "ahci", "usb_storage", "md_mod", "raid456"]) {
      expect(DEFAULT_RESCUE_MODULES).toContain(name);
    }
    for (const name of ["dm_crypt", "dm_thin_pool", "ext4", "xfs", "btrfs", "vfat", "xts"]) {
      expect(DEFAULT_RESCUE_MODULES).toContain(name);
    }
    for (const name of ["virtio_net", "e1000e", "igb", "r8169", "efivarfs"]) {
      expect(DEFAULT_RESCUE_MODULES).toContain(name);
    }
    const result = resolveModuleNames(DEFAULT_RESCUE_MODULES, index);
    expect(result.load).toContain("dm_thin_pool");
    expect(result.builtin).toContain("ext4");
    expect(result.missing).toContain("ahci");
  });

  it("loads disks, NICs, the medium and efivarfs before the prompt, the rest after", () => {
    for (const name of ["virtio_blk", "nvme", "virtio_net", "e1000e", "isofs", "efivarfs"]) {
      expect(BOOT_RESCUE_MODULES).toContain(name);
      expect(LATER_RESCUE_MODULES).not.toContain(name);
    }
    for (const name of ["md_mod", "raid456", "dm_crypt", "xfs", "btrfs", "vfat", "xts"]) {
      expect(LATER_RESCUE_MODULES).toContain(name);
      expect(BOOT_RESCUE_MODULES).not.toContain(name);
    }
    expect([...BOOT_RESCUE_MODULES, ...LATER_RESCUE_MODULES].sort()).toEqual(
      [...DEFAULT_RESCUE_MODULES].sort(),
    );
  });
});
