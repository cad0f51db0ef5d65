import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { readLayoutFile } from "../../layouts/document.ts";
import { buildRescueImage, checkBuildOptions, resolvePrograms } from "../../rescue/build.ts";
import { luksKeyDest, RESCUE_PATHS, rewriteAgentConfig } from "../../rescue/contract.ts";
import {
  parseExtraCmdline,
  renderGrubConfig,
  renderIpxeScript,
  renderPxelinuxConfig,
} from "../../rescue/grub.ts";
import { renderInit, UDHCPC_SCRIPT } from "../../rescue/init.ts";
import { bzImageVersion, locateKernel } from "../../rescue/kernel.ts";
import { layoutFeatures, RESCUE_PROGRAMS } from "../../rescue/programs.ts";
import { cli } from "../helpers/cli.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-rescue-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const fixture = (name: string) => path.join(import.meta.dirname, "..", "fixtures", "vm", name);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    if (error instanceof LifeboatError) return error.code;
    throw error;
  }
  return undefined;
}

/** A file with a bzImage setup header whose version string is `release`. */
function fakeKernel(file: string, release: string) {
  const buf = Buffer.alloc(0x1000);
  buf.write("HdrS", 0x202, "latin1");
  buf.writeUInt16LE(0x300, 0x20e);
  buf.write(`${release} (builder@example) #1 SMP\0`, 0x500, "latin1");
  writeFileSync(file, buf);
}

function fakeModules(root: string, release: string, withDep = true) {
  const dir = path.join(root, "lib", "modules", release);
  mkdirSync(dir, { recursive: true });
  if (withDep) writeFileSync(path.join(dir, "modules.dep"), "");
  return dir;
}

describe("the kernel", () => {
  it("reads the release from the bzImage header", () => {
    const file = path.join(work, "vmlinuz-6.1.0-56-cloud-amd64");
    fakeKernel(file, "6.1.0-56-cloud-amd64");
    expect(bzImageVersion(execFileSync("head", ["-c", "4096", file]))).toBe("6.1.0-56-cloud-amd64");
    expect(bzImageVersion(Buffer.alloc(0x1000))).toBeUndefined();
  });

  it("checks the module directory against the kernel's release", () => {
    const root = path.join(work, "k1");
    mkdirSync(path.join(root, "boot"), { recursive: true });
    const vmlinuz = path.join(root, "boot", "vmlinuz-6.1.0-9-amd64");
    fakeKernel(vmlinuz, "6.1.0-9-amd64");
    const modules = fakeModules(root, "6.1.0-9-amd64");
    expect(locateKernel({ kernel: vmlinuz, modules })).toEqual({
      vmlinuz,
      modulesDir: modules,
      version: "6.1.0-9-amd64",
    });
    const other = fakeModules(root, "6.1.0-8-amd64");
    expect(codeOf(() => locateKernel({ kernel: vmlinuz, modules: other }))).toBe(
      "LB_RESCUE_MODULES_VERSION",
    );
    // --modules is the version directory itself, not the directory above lib/modules.
    expect(codeOf(() => locateKernel({ kernel: vmlinuz, modules: root }))).toBe(
      "LB_RESCUE_MODULES_VERSION",
    );
    const noDep = fakeModules(path.join(work, "k2"), "6.1.0-9-amd64", false);
    expect(codeOf(() => locateKernel({ kernel: vmlinuz, modules: noDep }))).toBe(
      "LB_RESCUE_MODULES_NO_DEP",
    );
  });

  it("names a missing kernel, a file that is no kernel, and a misnamed one", () => {
    expect(codeOf(() => locateKernel({ kernel: path.join(work, "nope") }))).toBe(
      "LB_RESCUE_KERNEL_MISSING",
    );
    const text = path.join(work, "vmlinuz-notakernel");
    writeFileSync(text, "hello");
    expect(codeOf(() => locateKernel({ kernel: text }))).toBe("LB_RESCUE_KERNEL_FORMAT");
    const misnamed = path.join(work, "vmlinuz-6.1.0-1-amd64");
    fakeKernel(misnamed, "6.1.0-2-amd64");
    expect(codeOf(() => locateKernel({ kernel: misnamed }))).toBe("LB_RESCUE_KERNEL_VERSION");
  });
});

describe("the GRUB menu", () => {
  const cfg = renderGrubConfig({
    defaultEntry: "auto",
    timeoutSeconds: 5,
    extraArgs: ["lifeboat.after=poweroff"],
    host: "web01",
    kernelPath: "/boot/vmlinuz",
    initrdPath: "/boot/initrd.zst",
  });

  it("offers interactive, automatic and shell entries with serial and screen consoles", () => {
    expect(cfg).toContain("menuentry 'Recover (interactive)' --id interactive {");
    expect(cfg).toContain("menuentry 'Recover automatically' --id auto {");
    expect(cfg).toContain("menuentry 'Shell' --id shell {");
    expect(cfg).toContain("serial --unit=0 --speed=115200");
    expect(cfg).toContain("terminal_input console serial");
    expect(cfg).toContain("terminal_output console serial");
    expect(cfg).toMatch(/^set timeout=5$/m);
    expect(cfg).toMatch(/^set default=auto$/m);
    const linux = cfg.split("\n").filter((line) => line.trim().startsWith("linux "));
    expect(linux).toHaveLength(4);
    for (const line of linux) {
      expect(line).toContain("console=tty");
      expect(line).toContain("console=ttyS0,115200");
      expect(line).toContain("lifeboat.after=poweroff");
    }
    expect(linux[1]).toContain("lifeboat.mode=auto");
    expect(linux[2]).toContain("lifeboat.mode=shell");
    // The default entries leave /dev/console on serial (the last console= wins).
    expect(linux[0]).toMatch(/console=tty0 console=ttyS0,115200/);
    expect(linux[3]).toMatch(/console=ttyS0,115200 console=tty0/);
  });

  it("PXE configs carry the same entries", () => {
    const pxe = renderPxelinuxConfig({
      defaultEntry: "interactive",
      extraArgs: [],
      kernel: "vmlinuz",
      initrd: "initrd.zst",
    });
    expect(pxe).toContain("DEFAULT interactive");
    expect(pxe.match(/^LABEL /gm)).toHaveLength(3);
    expect(pxe).toContain("APPEND console=tty0 console=ttyS0,115200 panic=0 lifeboat.mode=auto");
  });

  it("the iPXE script offers the same entries and hands the EFI stub its initrd", () => {
    const script = renderIpxeScript({
      defaultEntry: "shell",
      extraArgs: ["lifeboat.after=poweroff"],
      kernel: "vmlinuz",
      initrd: "initrd.zst",
    });
    expect(script.startsWith("#!ipxe\n")).toBe(true);
    expect(script).toContain("choose --timeout 5000 --default shell entry || goto shell");
    expect(script).toContain("goto ${entry}");
    const kernels = script.match(/^kernel .*$/gm) ?? [];
    expect(kernels).toHaveLength(3);
    for (const id of ["interactive", "auto", "shell"]) {
      expect(script).toContain(`item ${id} `);
      expect(script).toContain(`\n:${id}\nkernel vmlinuz initrd=initrd.zst `);
    }
    for (const line of kernels) expect(line).toMatch(/lifeboat\.after=poweroff$/);
    expect(script.match(/^initrd initrd\.zst$/gm)).toHaveLength(3);
  });

  it("--cmdline takes plain words and refuses quoting and mode overrides", () => {
    expect(parseExtraCmdline(" lifeboat.ip=10.0.0.5/24,10.0.0.1  quiet ")).toEqual([
      "lifeboat.ip=10.0.0.5/24,10.0.0.1",
      "quiet",
    ]);
    expect(parseExtraCmdline(undefined)).toEqual([]);
    expect(codeOf(() => parseExtraCmdline('a="b c"'))).toBe("LB_RESCUE_CMDLINE");
    expect(codeOf(() => parseExtraCmdline("x;reboot"))).toBe("LB_RESCUE_CMDLINE");
    expect(codeOf(() => parseExtraCmdline("lifeboat.mode=shell"))).toBe("LB_RESCUE_CMDLINE");
    expect(codeOf(() => parseExtraCmdline("lifeboat.auto=1"))).toBe("LB_RESCUE_CMDLINE");
  });
});

describe("the agent config inside the image", () => {
  it("points file references at the image's copies and keeps an inline token", () => {
    const { config, files } = rewriteAgentConfig(
      {
        server: "https://backup.internal:8450",
        token: "inline",
        tokenFile: "host.token",
        keyFile: "/etc/lifeboat/keys/repo.key",
        ca: "/etc/ssl/lifeboat-ca.pem",
        host: "web01",
        excludes: [],
        hooks: { pre: [], post: [] },
        fullEvery: 7,
        stateDir: "/var/lib/lifeboat",
      },
      "/etc/lifeboat",
    );
    expect(config.tokenFile).toBe(RESCUE_PATHS.token);
    expect(config.keyFile).toBe(RESCUE_PATHS.repoKey);
    expect(config.ca).toBe(RESCUE_PATHS.ca);
    expect(config.token).toBe("inline");
    expect(config.server).toBe("https://backup.internal:8450");
    expect(config.host).toBe("web01");
    expect(config.stateDir).toBeUndefined();
    expect(files.map((f) => [f.source, f.dest, f.mode.toString(8), f.secret])).toEqual([
      ["/etc/lifeboat/host.token", "/etc/lifeboat/token", "600", true],
      ["/etc/lifeboat/keys/repo.key", "/etc/lifeboat/repo.key", "600", true],
      ["/etc/ssl/lifeboat-ca.pem", "/etc/lifeboat/ca.pem", "644", false],
    ]);
  });

  it("a config without files copies nothing", () => {
    const { files } = rewriteAgentConfig(
      { excludes: [], hooks: { pre: [], post: [] }, fullEvery: 7 },
      "/x",
    );
    expect(files).toEqual([]);
  });

  it("LUKS key names become file names under /etc/lifeboat/luks", () => {
    expect(luksKeyDest("cr_root")).toBe("/etc/lifeboat/luks/cr_root");
    expect(luksKeyDest("0b8e2c1e-7c4b-4a57-9d3e-2f1d4c3b2a10")).toBe(
      "/etc/lifeboat/luks/0b8e2c1e-7c4b-4a57-9d3e-2f1d4c3b2a10",
    );
    expect(luksKeyDest("*")).toBe("/etc/lifeboat/luks/*");
    expect(luksKeyDest("../etc/passwd")).toBeUndefined();
    expect(luksKeyDest(".hidden")).toBeUndefined();
  });
});

describe("programs", () => {
  it("storage tools are essential when the layout uses the feature", async () => {
    const raid = await readLayoutFile(fixture("c-raid1-luks-lvm-xfs.json"));
    const features = layoutFeatures(raid);
    expect([...features].sort()).toEqual(expect.arrayContaining(["luks", "lvm", "md", "xfs"]));
    const withoutXfs = (name: string) => (name === "mkfs.xfs" ? undefined : `/usr/sbin/${name}`);
    let error: unknown;
    try {
      resolvePrograms(RESCUE_PROGRAMS, raid, withoutXfs);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(LifeboatError);
    expect((error as LifeboatError).code).toBe("LB_RESCUE_TOOL_MISSING");
    expect((error as LifeboatError).message).toContain("mkfs.xfs");
    expect((error as LifeboatError).hint).toBe("Install them: apt-get install xfsprogs");
  });

  it("the same tool is only a warning for a layout without the feature", async () => {
    const plain = await readLayoutFile(fixture("a-bios-gpt-ext4.json"));
    expect(layoutFeatures(plain).has("xfs")).toBe(false);
    const without = (name: string) =>
      name === "mkfs.xfs" || name === "sgdisk" ? undefined : `/usr/sbin/${name}`;
    const result = resolvePrograms(RESCUE_PROGRAMS, plain, without);
    expect(result.missingOptional.map((p) => p.name).sort()).toEqual(["mkfs.xfs", "sgdisk"]);
    expect(result.found.map((f) => f.program.name)).toContain("mkfs.ext4");
  });

  it("busybox, bash, GNU tar and util-linux are always essential", () => {
    const none = () => undefined;
    let error: LifeboatError | undefined;
    try {
      resolvePrograms(RESCUE_PROGRAMS, null, none);
    } catch (caught) {
      error = caught as LifeboatError;
    }
    expect(error?.hint).toMatch(/busybox-static/);
    expect(error?.hint).toMatch(/ bash /);
    expect(error?.hint).toMatch(/ tar /);
    expect(error?.hint).toMatch(/util-linux/);
    expect(error?.hint).not.toMatch(/xfsprogs/);
  });
});

describe("checkBuildOptions", () => {
  it("needs an output and checks the LUKS keys, level and timeout", () => {
    expect(codeOf(() => checkBuildOptions({}))).toBe("LB_RESCUE_NO_OUTPUT");
    const out = path.join(work, "r.iso");
    expect(codeOf(() => checkBuildOptions({ out }))).toBeUndefined();
    expect(codeOf(() => checkBuildOptions({ out: path.join(work, "no", "r.iso") }))).toBe(
      "LB_RESCUE_OUT_DIR",
    );
    expect(codeOf(() => checkBuildOptions({ out, luksKeys: { "../x": "/dev/null" } }))).toBe(
      "LB_RESCUE_LUKS_KEY",
    );
    expect(
      codeOf(() => checkBuildOptions({ out, luksKeys: { cr: path.join(work, "missing") } })),
    ).toBe("LB_RESCUE_LUKS_KEY");
    expect(codeOf(() => checkBuildOptions({ out, compressionLevel: 20 }))).toBe("LB_RESCUE_LEVEL");
    expect(codeOf(() => checkBuildOptions({ out, timeoutSeconds: -1 }))).toBe("LB_RESCUE_TIMEOUT");
    expect(codeOf(() => checkBuildOptions({ out, addPrograms: ["/nonexistent/tool"] }))).toBe(
      "LB_RESCUE_PROGRAM",
    );
  });
});

describe("lifeboat rescue build (CLI)", () => {
  it("--embed needs the server it exports from, and an ISO to carry it", async () => {
    const env = process.env.LIFEBOAT_CONFIG;
    process.env.LIFEBOAT_CONFIG = "/nonexistent/agent.json";
    try {
      const noServer = await cli(
        "rescue",
        "build",
        "--out",
        "x.iso",
        "--embed",
        "latest",
        "--no-config",
        "--layout",
        "/nonexistent.json",
      );
      expect(noServer.code).toBe(2);
      expect(noServer.stderr).toContain("LB_NO_SERVER");
    } finally {
      if (env === undefined) delete process.env.LIFEBOAT_CONFIG;
      else process.env.LIFEBOAT_CONFIG = env;
    }
    await expect(
      buildRescueImage({ pxeDir: "/tmp/x", embedDir: "/tmp/y", layoutFile: "/nonexistent.json" }),
    ).rejects.toThrow(/PXE files alone can't carry one/);
  });

  it("checks --default-entry and contradicting config flags", async () => {
    const bad = await cli("rescue", "build", "--out", "x.iso", "--default-entry", "yes");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--default-entry yes");
    const both = await cli("rescue", "build", "--out", "x.iso", "--config", "a", "--no-config");
    expect(both.code).toBe(2);
  });

  it("names the missing kernel with the flags that fix it", async () => {
    const result = await cli(
      "rescue",
      "build",
      "--out",
      path.join(work, "k.iso"),
      "--kernel",
      path.join(work, "vmlinuz-missing"),
      "--layout",
      fixture("a-bios-gpt-ext4.json"),
      "--no-config",
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("LB_RESCUE_KERNEL_MISSING");
    expect(result.stderr).toContain("--modules");
  });
});

describe("the init and the DHCP script", () => {
  it("are valid shell", () => {
    const init = path.join(work, "init");
    writeFileSync(init, renderInit({ hostname: "web01" }));
    execFileSync("busybox", ["sh", "-n", init]);
    execFileSync("bash", ["-n", init]);
    const script = path.join(work, "udhcpc.script");
    writeFileSync(script, UDHCPC_SCRIPT);
    execFileSync("busybox", ["sh", "-n", script]);
  });

  it("prints the ready marker once and never reboots after a failure", () => {
    const init = renderInit({ hostname: "web01" });
    expect(init.match(/LIFEBOAT-RESCUE-READY/g)).toHaveLength(1);
    const auto = init.slice(init.indexOf("  auto)\n    setsid"));
    const failure = auto.slice(auto.indexOf("LIFEBOAT RECOVERY FAILED"));
    expect(failure.slice(0, failure.indexOf(";;"))).not.toMatch(/reboot -f|poweroff -f/);
  });

  it("keeps a hostname that could inject shell out of the script", () => {
    expect(renderInit({ hostname: "a;reboot" })).toContain("HOST=lifeboat-rescue");
  });
});
