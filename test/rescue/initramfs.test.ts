import { describe, expect, it } from "vitest";
import {
  busyboxInit,
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
    expect(init).toContain(`done < ${MODULE_LOAD_ORDER}`);
    expect(init.indexOf("insmod")).toBeLessThan(init.indexOf("echo READY"));
  });
});
