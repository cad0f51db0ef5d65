// spawnTarCreate: GNU tar's exit statuses, and a tar that is stopped leaves no process behind.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { spawnTarCreate, tarCreateArgs, type TarCreate } from "../../agent/backup/tar.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-tarc-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function tree(name: string, files: Record<string, string | Buffer>): string {
  const dir = path.join(work, name);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), content);
  }
  return dir;
}

/** Read the whole archive, releasing each chunk; returns its size. */
async function drain(tar: TarCreate): Promise<number> {
  let bytes = 0;
  for (let chunk = await tar.chunks.next(); chunk; chunk = await tar.chunks.next()) {
    bytes += chunk.data.length;
    chunk.release();
  }
  return bytes;
}

async function gone(pid: number | undefined) {
  expect(pid).toBeGreaterThan(0);
  // Node reaps its children; /proc/PID disappears once the exit status was collected.
  for (let i = 0; i < 50 && existsSync(`/proc/${pid}`); i++)
    await new Promise((r) => setTimeout(r, 20));
  expect(existsSync(`/proc/${pid}`)).toBe(false);
}

describe("spawnTarCreate", () => {
  it("passes the documented arguments, excludes before the directory", () => {
    const args = tarCreateArgs({ dir: "/srv", excludes: ["./tmp/*"], snarFile: "/s", full: true });
    expect(args.slice(0, 6)).toEqual([
      "--create",
      "--file=-",
      "--format=posix",
      "--pax-option=delete=atime,delete=ctime",
      "--listed-incremental=/s",
      "--level=0",
    ]);
    expect(args.slice(-4)).toEqual(["--anchored", "--exclude=./tmp/*", "--directory=/srv", "."]);
    expect(args).not.toContain("--wildcards");
  });

  it("streams a tree and resolves with no warnings", async () => {
    const dir = tree("plain", { "a.txt": "a", "sub/b.txt": "b" });
    const tar = await spawnTarCreate({
      dir,
      excludes: [],
      snarFile: path.join(work, "plain.snar"),
    });
    const bytes = await drain(tar);
    expect(await tar.done).toEqual({ warnings: [] });
    expect(bytes).toBeGreaterThan(0);
    expect(bytes % 512).toBe(0);
    expect(existsSync(path.join(work, "plain.snar"))).toBe(true);
    // The FIFO the stream came through is gone.
    expect(existsSync(path.join(work, "plain.snar.stream"))).toBe(false);
    await gone(tar.pid);
  });

  it("treats 'file changed as we read it' (exit 1) as a warning", async () => {
    const dir = tree("changing", { "big.bin": Buffer.alloc(256 << 20, 1) });
    // Append to the file the whole time tar reads it.
    const writer = spawn("sh", ["-c", `while :; do echo x >> '${dir}/big.bin'; done`]);
    try {
      const tar = await spawnTarCreate({
        dir,
        excludes: [],
        snarFile: path.join(work, "changing.snar"),
      });
      await drain(tar);
      const { warnings } = await tar.done;
      expect(warnings).toEqual([expect.stringMatching(/big\.bin: file changed as we read it/)]);
    } finally {
      writer.kill();
    }
  }, 60_000);

  it("fails with LB_BACKUP_TAR quoting tar's message when tar exits 2", async () => {
    const tar = await spawnTarCreate({
      dir: path.join(work, "does-not-exist"),
      excludes: [],
      snarFile: path.join(work, "x.snar"),
    });
    await drain(tar);
    const error = await tar.done.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LifeboatError);
    expect(error).toMatchObject({ code: "LB_BACKUP_TAR" });
    expect((error as Error).message).toMatch(/exit 2\).*does-not-exist.*No such file or directory/);
  });

  it("kills tar when the reader stops early, leaving no process", async () => {
    const dir = tree("early", { "big.bin": Buffer.alloc(64 << 20, 2) });
    const tar = await spawnTarCreate({
      dir,
      excludes: [],
      snarFile: path.join(work, "early.snar"),
    });
    const first = await tar.chunks.next();
    expect(first).not.toBeNull();
    tar.chunks.destroy();
    const error = await tar.done.catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/reader stopped/);
    await gone(tar.pid);
  });

  it("kills tar when the signal aborts, and rejects with the abort reason", async () => {
    const dir = tree("abort", { "big.bin": Buffer.alloc(64 << 20, 3) });
    const controller = new AbortController();
    const tar = await spawnTarCreate({
      dir,
      excludes: [],
      snarFile: path.join(work, "abort.snar"),
      signal: controller.signal,
    });
    await tar.chunks.next();
    controller.abort(new Error("user pressed ^C"));
    await expect(drain(tar)).rejects.toThrow("user pressed ^C");
    await expect(tar.done).rejects.toThrow("user pressed ^C");
    await gone(tar.pid);
  });

  it("refuses to start when already aborted", async () => {
    await expect(
      spawnTarCreate({
        dir: work,
        excludes: [],
        snarFile: path.join(work, "n.snar"),
        signal: AbortSignal.abort(new Error("stop")),
      }),
    ).rejects.toThrow("stop");
  });
});
