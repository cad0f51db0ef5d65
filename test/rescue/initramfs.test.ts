import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  buildInitramfs,
  busyboxInit,
  MODULE_LOAD_LATER,
  MODULE_LOAD_ORDER,
  parseBusyboxApplets,
  parseLddOutput,
  parseShowDepends,
} from "../../rescue/initramfs.ts";

describe("parseLddOutput", () => {
  it("collects mapped libraries and the ELF interpreter, not the vDSO", () => {
    const out = `\tlinux-vdso.so.1 (0x00007ffd6a9f2000)
\tlibcryptsetup.so.12 => /lib/x86_64-linux-gnu/libcryptsetup.so.12 (0x00007f0e2ec0e000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e2e9bc000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e2ecdc000)
`;
    expect(parseLddOutput(out)).toEqual({
      libraries: [
        "/lib/x86_64-linux-gnu/libcryptsetup.so.12",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
      ],
      missing: [],
      notDynamic: false,
    });
  });

  it("reports static files and scripts as not dynamic", () => {
    expect(parseLddOutput("\tnot a dynamic executable\n")).toEqual({
      libraries: [],
      missing: [],
      notDynamic: true,
    });
    expect(parseLddOutput("\tstatically linked\n").notDynamic).toBe(true);
  });

  it("reports missing libraries by soname", () => {
    const out =
      "\tlibfoo.so.3 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n";
    const parsed = parseLddOutput(out);
    expect(parsed.missing).toEqual(["libfoo.so.3"]);
    expect(parsed.libraries).toEqual(["/lib/x86_64-linux-gnu/libc.so.6"]);
  });
});

describe("parseShowDepends", () => {
  it("keeps the load order and parameters, and lists builtins", () => {
    const out = `insmod /k/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/md/md-mod.ko start_ro=1 
insmod /k/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/md/raid1.ko 
builtin ext4
`;
    expect(parseShowDepends(out)).toEqual({
      loads: [
        {
          file: "/k/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/md/md-mod.ko",
          params: "start_ro=1",
        },
        { file: "/k/lib/modules/6.1.0-56-cloud-amd64/kernel/drivers/md/raid1.ko", params: "" },
      ],
      builtin: ["ext4"],
    });
  });
});

describe("parseBusyboxApplets", () => {
  it("makes the relative applet paths absolute and drops linuxrc", () => {
    expect(parseBusyboxApplets("linuxrc\nbin/sh\nusr/sbin/chroot\n\n")).toEqual([
      "/bin/sh",
      "/usr/sbin/chroot",
    ]);
  });
});

describe("busyboxInit", () => {
  it("mounts the pseudo filesystems and loads modules before the body", () => {
    const init = busyboxInit("echo READY");
    expect(init.startsWith("#!/bin/sh\n")).toBe(true);
    expect(init).toContain("mount -t devtmpfs devtmpfs /dev");
    expect(init).toContain(`for list in ${MODULE_LOAD_ORDER} ${MODULE_LOAD_LATER}; do`);
    expect(init.indexOf("insmod")).toBeLessThan(init.indexOf("echo READY"));
  });
});

describe("buildInitramfs", () => {
  it("packs busybox, programs with their libraries, files and /init into a zstd newc cpio", async () => {
    const work = path.join(import.meta.dirname, "..", "..", ".work");
    mkdirSync(work, { recursive: true });
    const dir = await mkdtemp(path.join(work, "initramfs-test-"));
    try {
      const result = await buildInitramfs({
        out: path.join(dir, "test.cpio.zst"),
        programs: [
          "blkid",
          { source: "zstd", dest: "/opt/zstd" },
          { source: "xz", dest: "/opt/packed/xz", compressed: true },
        ],
        files: [{ dest: "/etc/marker", content: "hello\n" }],
        symlinks: [{ path: "/usr/sbin/findfs2", target: "blkid" }],
        init: busyboxInit("echo READY"),
        compressionLevel: 1,
      });
      expect(result.size).toBeGreaterThan(100_000);
      const listing = execFileSync(
        "bash",
        ["-c", 'zstd -dc "$1" | cpio -itv --quiet', "list", result.path],
        { encoding: "utf8" },
      );
      const entries = new Map(
        listing
          .trim()
          .split("\n")
          .map((line) => {
            const fields = line.trim().split(/\s+/);
            return [fields[8] ?? "", line] as const;
          }),
      );
      // busybox itself is the real binary, not one of its own applet links.
      expect(entries.get("usr/bin/busybox")).toMatch(/^-rwxr-xr-x/);
      expect(entries.get("usr/bin/sh")).toMatch(/-> \/usr\/bin\/busybox$/);
      expect(entries.get("bin")).toMatch(/-> usr\/bin$/);
      // Programs replace the applet of the same name; libraries and the ELF interpreter come along.
      expect(entries.get("usr/sbin/blkid")).toMatch(/^-rwxr-xr-x/);
      expect(entries.has("opt/zstd")).toBe(true);
      // A compressed program is only its .zst (for the init to unpack), libraries still in.
      expect(entries.get("opt/packed/xz.zst")).toMatch(/^-rw-r--r--/);
      expect(entries.has("opt/packed/xz")).toBe(false);
      expect(entries.has("usr/lib/x86_64-linux-gnu/liblzma.so.5")).toBe(true);
      expect(entries.has("usr/lib64/ld-linux-x86-64.so.2")).toBe(true);
      expect(entries.has("usr/lib/x86_64-linux-gnu/libblkid.so.1")).toBe(true);
      expect(entries.get("usr/sbin/findfs2")).toMatch(/-> blkid$/);
      expect(entries.get("init")).toMatch(/^-rwxr-xr-x/);
      expect(entries.get("etc/marker")).toMatch(/^-rw-r--r--/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names kernel modules that don't exist", async () => {
    const work = path.join(import.meta.dirname, "..", "..", ".work");
    mkdirSync(work, { recursive: true });
    const dir = await mkdtemp(path.join(work, "initramfs-test-"));
    try {
      // An empty module tree: modprobe knows no module at all.
      mkdirSync(path.join(dir, "k", "lib", "modules", "0.0-test"), { recursive: true });
      writeFileSync(path.join(dir, "k", "lib", "modules", "0.0-test", "modules.dep"), "");
      await expect(
        buildInitramfs({
          out: path.join(dir, "test.cpio.zst"),
          busybox: false,
          init: "#!/bin/sh\n",
          modules: {
            root: path.join(dir, "k"),
            version: "0.0-test",
            names: ["nosuchmod", "dm_mod"],
          },
        }),
      ).rejects.toThrow(/no module named nosuchmod, dm_mod/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
