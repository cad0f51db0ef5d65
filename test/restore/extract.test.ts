// extractTar around the extraction itself: a bad target, a failing or aborted input, chosen
// members, a stream that is not tar, and the confinement leaving nothing mounted behind.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tarStream from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { extractTar, tarExtractArgs } from "../../agent/restore/extract.ts";

const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-extract-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function archive(files: Record<string, string>): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  pack.on("data", (d) => void parts.push(d as Buffer));
  const ended = new Promise<void>((resolve) => pack.on("end", () => resolve()));
  for (const [name, body] of Object.entries(files)) pack.entry({ name }, body);
  pack.finalize();
  await ended;
  return Buffer.concat(parts);
}

function target(name: string) {
  const dir = path.join(work, name);
  mkdirSync(dir);
  return dir;
}

describe("tarExtractArgs", () => {
  it("restores every attribute, deletes between levels, and names members as backup does", () => {
    const args = tarExtractArgs({
      target: "/mnt",
      incremental: true,
      members: ["etc/hosts", "/etc/passwd", "./var/", "-rf"],
    });
    for (const flag of [
      "--numeric-owner",
      "--same-owner",
      "--preserve-permissions",
      "--xattrs",
      "--xattrs-include=*",
      "--acls",
      "--selinux",
      "--listed-incremental=/dev/null",
      // Reads tar's input in 1 MiB records (extract.ts says why).
      "--blocking-factor=2048",
      "--read-full-records",
    ]) {
      expect(args).toContain(flag);
    }
    for (const never of ["--absolute-names", "--keep-directory-symlink", "--dereference"]) {
      expect(args).not.toContain(never);
    }
    expect(args.slice(-5)).toEqual(["--", "./etc/hosts", "./etc/passwd", "./var", "./-rf"]);
    expect(tarExtractArgs({ target: "/mnt", incremental: false })).not.toContain(
      "--listed-incremental=/dev/null",
    );
  });
});

describe.runIf(root)("extractTar (root)", () => {
  it("names a missing target", async () => {
    await expect(
      extractTar({
        target: path.join(work, "nope"),
        input: [Buffer.alloc(1024)],
        incremental: false,
      }),
    ).rejects.toMatchObject({ code: "LB_RESTORE_TARGET" });
  });

  it("passes on a failing input and stops tar before it extracts more", async () => {
    const dest = target("failing");
    const whole = await archive({ "a.txt": "a".repeat(5000), "b.txt": "b" });
    async function* failing() {
      yield whole.subarray(0, 512); // the first header only
      throw new Error("chunk 1234 is damaged");
    }
    await expect(
      extractTar({ target: dest, input: failing(), incremental: false }),
    ).rejects.toThrow("chunk 1234 is damaged");
    // tar may have created a.txt from its header before it was stopped; nothing after it.
    expect(readdirSync(dest).filter((name) => name !== "a.txt")).toEqual([]);
    if (existsSync(path.join(dest, "a.txt")))
      expect(readFileSync(path.join(dest, "a.txt")).length).toBeLessThan(5000);
  });

  it("stops when the signal aborts", async () => {
    const dest = target("aborted");
    const controller = new AbortController();
    const whole = await archive({ "a.txt": "a", "b.txt": "b" });
    async function* slow() {
      yield whole.subarray(0, 512);
      controller.abort(new Error("stop now"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      yield whole.subarray(512);
    }
    await expect(
      extractTar({ target: dest, input: slow(), incremental: false, signal: controller.signal }),
    ).rejects.toThrow("stop now");
    expect(existsSync(path.join(dest, "b.txt"))).toBe(false);
  });

  it("extracts only the chosen members", async () => {
    const dest = target("members");
    const input = [await archive({ "./etc/hosts": "h", "./etc/passwd": "p", "./var/x": "x" })];
    await extractTar({ target: dest, input, incremental: false, members: ["/etc/hosts"] });
    expect(readFileSync(path.join(dest, "etc/hosts"), "utf8")).toBe("h");
    expect(existsSync(path.join(dest, "etc/passwd"))).toBe(false);
    expect(existsSync(path.join(dest, "var"))).toBe(false);
    await expect(
      extractTar({ target: dest, input, incremental: false, members: ["etc/shadow"] }),
    ).rejects.toMatchObject({
      code: "LB_RESTORE_MEMBER_NOT_FOUND",
      message: "The archive has no ./etc/shadow.",
    });
  });

  it("fails with LB_RESTORE_TAR on a stream that is not tar", async () => {
    const dest = target("garbage");
    await expect(
      extractTar({ target: dest, input: [Buffer.alloc(4096, 0x41)], incremental: false }),
    ).rejects.toMatchObject({ code: "LB_RESTORE_TAR" });
  });

  it("refuses a target reached through a symlink below the restore root", async () => {
    const restoreRoot = target("root");
    const elsewhere = target("elsewhere");
    // What a crafted "/" stream could leave where the /boot filesystem is to be extracted.
    symlinkSync(elsewhere, path.join(restoreRoot, "boot"));
    const input = [await archive({ "./vmlinuz": "k" })];
    const options = { input, incremental: true, within: restoreRoot };
    await expect(
      extractTar({ ...options, target: path.join(restoreRoot, "boot") }),
    ).rejects.toMatchObject({ code: "LB_RESTORE_TARGET", message: /goes through the symlink/ });
    await expect(extractTar({ ...options, target: elsewhere })).rejects.toMatchObject({
      code: "LB_RESTORE_TARGET",
      message: /is not inside/,
    });
    expect(readdirSync(elsewhere)).toEqual([]);
    mkdirSync(path.join(restoreRoot, "srv"));
    await extractTar({ ...options, target: path.join(restoreRoot, "srv") });
    expect(readdirSync(path.join(restoreRoot, "srv"))).toEqual(["vmlinuz"]);
  });

  it("leaves no mount behind in this namespace", async () => {
    const dest = target("mounts");
    await extractTar({ target: dest, input: [await archive({ f: "f" })], incremental: false });
    const mounts = readFileSync("/proc/self/mountinfo", "utf8");
    expect(mounts).not.toContain(dest);
  });
});
