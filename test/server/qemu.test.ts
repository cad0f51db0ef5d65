import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  createQcow2,
  extractDataBlocks,
  qemuArgs,
  serialEmitShell,
} from "../../server/drills/qemu.ts";

const files = { consoleLog: "/w/c.log", dataLog: "/w/d.log", qmpSocket: "/w/q.sock" };

describe("extractDataBlocks", () => {
  it("decodes blocks and ignores what is around them", () => {
    const text = [
      "noise before",
      "===BEGIN layout.json===",
      Buffer.from('{"disks":[]}').toString("base64"),
      "===END layout.json===",
      "===BEGIN exit-code===",
      Buffer.from("0\n").toString("base64"),
      "===END exit-code===",
    ].join("\n");
    const { blocks, unterminated, skippedLines } = extractDataBlocks(text);
    expect(blocks.get("layout.json")?.toString()).toBe('{"disks":[]}');
    expect(blocks.get("exit-code")?.toString()).toBe("0\n");
    expect(unterminated).toEqual([]);
    expect(skippedLines).toBe(0);
  });

  it("survives CR LF, wrapped base64 and kernel lines inside a block", () => {
    const payload = Buffer.from("x".repeat(200));
    const b64 = payload.toString("base64");
    const wrapped = b64.match(/.{1,76}/g) ?? [];
    const text = [
      "===BEGIN big===\r",
      wrapped[0],
      "[   12.345678] random: crng init done\r",
      ...wrapped.slice(1),
      "===END big===\r",
    ].join("\r\n");
    const { blocks, skippedLines } = extractDataBlocks(text);
    expect(blocks.get("big")?.equals(payload)).toBe(true);
    expect(skippedLines).toBe(1);
  });

  it("reports blocks that never end, and an END for another name does not close one", () => {
    const text =
      "===BEGIN a===\nAAAA\n===END b===\n===BEGIN c===\nQUJD\n===END c===\n===BEGIN d===\n";
    const { blocks, unterminated } = extractDataBlocks(text);
    expect([...blocks.keys()]).toEqual(["c"]);
    expect(blocks.get("c")?.toString()).toBe("ABC");
    expect(unterminated).toEqual(["a", "d"]);
  });

  it("round-trips empty files", () => {
    const { blocks } = extractDataBlocks("===BEGIN empty===\n===END empty===\n");
    expect(blocks.get("empty")?.length).toBe(0);
  });
});

describe("serialEmitShell", () => {
  it("writes the markers the extractor expects to the data port", () => {
    const shell = serialEmitShell("/dev/ttyS1");
    expect(shell).toContain('echo "===BEGIN $1==="');
    expect(shell).toContain('echo "===END $1==="');
    expect(shell).toContain("LB_DATA_PORT=/dev/ttyS1");
  });
});

describe("qemuArgs", () => {
  it("uses TCG, no default devices, two serial ports and QMP", () => {
    const args = qemuArgs({ name: "t", dir: "/w", accel: "tcg" }, files);
    expect(args.join(" ")).toContain("-accel tcg");
    expect(args[args.indexOf("-cpu") + 1]).toBe("qemu64");
    expect(args).toContain("-nodefaults");
    expect(args.filter((a) => a === "-serial")).toHaveLength(2);
    expect(args).toContain("file:/w/c.log");
    expect(args).toContain("file:/w/d.log");
    expect(args).toContain("unix:/w/q.sock,server=on,wait=off");
    expect(args.join(" ")).toContain("-nic none");
  });

  it("puts the console on a socket that also logs to the console log when input is wanted", () => {
    const args = qemuArgs(
      { name: "t", dir: "/w", accel: "tcg", consoleInput: true },
      { ...files, consoleSocket: "/w/t.tty" },
    );
    expect(args[args.indexOf("-chardev") + 1]).toBe(
      "socket,id=console0,path=/w/t.tty,server=on,wait=off,logfile=/w/c.log",
    );
    // ttyS0 is that chardev, ttyS1 still the data file.
    expect(args.filter((a, i) => args[i - 1] === "-serial")).toEqual([
      "chardev:console0",
      "file:/w/d.log",
    ]);
    expect(() => qemuArgs({ name: "t", dir: "/w", consoleInput: true }, files)).toThrow(/socket/);
  });

  it("attaches NVMe and virtio disks with serials, in order", () => {
    const args = qemuArgs(
      {
        name: "t",
        dir: "/w",
        accel: "tcg",
        disks: [
          { file: "/w/a.qcow2", format: "qcow2", bus: "nvme", serial: "NV1" },
          { file: "/w/b.raw", serial: "vd1", readOnly: true },
        ],
      },
      files,
    );
    const devices = args.filter((_, i) => args[i - 1] === "-device");
    expect(devices).toEqual([
      "nvme,drive=disk0,serial=NV1",
      "virtio-blk-pci,drive=disk1,serial=vd1",
    ]);
    const drives = args.filter((_, i) => args[i - 1] === "-drive");
    expect(drives[0]).toContain("format=qcow2");
    expect(drives[1]).toContain("readonly=on");
  });

  it("builds an isolated user network with a socat guestfwd", () => {
    const args = qemuArgs(
      {
        name: "t",
        dir: "/w",
        accel: "tcg",
        network: { guestfwd: [{ address: "10.0.2.100", port: 80, hostPort: 8123 }] },
      },
      files,
    );
    const netdev = args[args.indexOf("-netdev") + 1];
    expect(netdev).toBe(
      "user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:8123",
    );
  });

  it("serves TFTP and puts the NIC first in the boot order for a network boot", () => {
    const args = qemuArgs(
      {
        name: "t",
        dir: "/w",
        accel: "tcg",
        network: { tftp: { dir: "/w/pxe", bootfile: "boot.ipxe" }, bootIndex: 0 },
      },
      files,
    );
    expect(args[args.indexOf("-netdev") + 1]).toBe(
      "user,id=net0,restrict=on,tftp=/w/pxe,bootfile=boot.ipxe",
    );
    expect(args[args.indexOf("-netdev") + 3]).toBe("virtio-net-pci,netdev=net0,bootindex=0");
  });

  it("boots UEFI from OVMF code plus the VM's own VARS copy", () => {
    const args = qemuArgs(
      { name: "t", dir: "/w", accel: "tcg", firmware: "uefi" },
      { ...files, vars: "/w/t.vars.fd" },
    );
    const pflash = args.filter((a) => a.startsWith("if=pflash"));
    expect(pflash[0]).toMatch(/readonly=on,file=\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd$/);
    expect(pflash[1]).toBe("if=pflash,format=raw,unit=1,file=/w/t.vars.fd");
  });
});

describe("createQcow2", () => {
  it("makes blank disks of a virtual size, and overlays that name their backing file", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "lifeboat-qcow2-"));
    try {
      const info = (file: string) =>
        JSON.parse(execFileSync("qemu-img", ["info", "--output=json", file], { encoding: "utf8" }));
      const blank = path.join(dir, "blank.qcow2");
      await createQcow2(blank, { sizeBytes: 64 * 1024 * 1024 });
      expect(info(blank)).toMatchObject({ format: "qcow2", "virtual-size": 64 * 1024 * 1024 });
      const overlay = path.join(dir, "overlay.qcow2");
      await createQcow2(overlay, { backing: blank, format: "qcow2" });
      expect(info(overlay)).toMatchObject({
        "backing-filename": blank,
        "backing-filename-format": "qcow2",
        "virtual-size": 64 * 1024 * 1024,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
