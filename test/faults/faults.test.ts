// Fault injection with real processes: an agent killed mid-upload, a server killed
// mid-upload, and a data directory that runs out of space. Each test is bounded.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createCipheriv } from "node:crypto";
import { ApiClient } from "../../agent/client/api.ts";
import { startChildServer, freePort, type ChildServer } from "../helpers/server.ts";

const ROOT = path.resolve(import.meta.dirname, "..", "..");
const root = process.getuid?.() === 0;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-faults-"));
const servers: ChildServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.kill().catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

/** Incompressible, deterministic data: AES-CTR keystream. */
function noise(bytes: number, seed: number): Buffer {
  const cipher = createCipheriv("aes-256-ctr", Buffer.alloc(32, seed), Buffer.alloc(16));
  return cipher.update(Buffer.alloc(bytes));
}

function dataset(name: string, megabytes: number): string {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < megabytes / 8; i++)
    writeFileSync(path.join(dir, `part-${i}.bin`), noise(8 * 1048576, i + 1));
  return dir;
}

function chunkFiles(dataDir: string): number {
  try {
    return readdirSync(path.join(dataDir, "chunks"), {
      recursive: true,
      withFileTypes: true,
    }).filter((d) => d.isFile()).length;
  } catch {
    return 0;
  }
}

interface AgentRun {
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  kill(): void;
}

function agent(server: ChildServer, token: string, src: string, state: string): AgentRun {
  const child = spawn(
    path.join(ROOT, "bin/lifeboat"),
    ["backup", "--path", src, "--no-layout", "--json"],
    {
      env: {
        ...process.env,
        LIFEBOAT_SERVER: server.url,
        LIFEBOAT_TOKEN: token,
        LIFEBOAT_STATE_DIR: state,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    done: new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr }))),
    kill: () => child.kill("SIGKILL"),
  };
}

async function until(condition: () => boolean, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function verifyResult(client: ApiClient) {
  const events = [];
  for await (const event of client.verify(true)) events.push(event);
  return events.at(-1)!;
}

describe("faults", () => {
  const src = dataset("data", 96);

  it("agent killed mid-upload: nothing visible, the next backup reuses the uploaded chunks", async () => {
    const server = await startChildServer(path.join(work, "srv-agent"));
    servers.push(server);
    const { token, client } = await server.host("victim");
    const state = path.join(work, "state-agent");
    const run = agent(server, token, src, state);
    await until(() => chunkFiles(server.dataDir) >= 20);
    run.kill();
    const killed = await run.done;
    expect(killed.code).not.toBe(0);
    expect(await client.listSnapshots()).toEqual([]);
    const uploaded = chunkFiles(server.dataDir);
    const again = await agent(server, token, src, state).done;
    expect(again.code, again.stderr).toBe(0);
    const summary = JSON.parse(again.stdout) as { id: string; newBytes: number; bytes: number };
    expect((await client.listSnapshots()).map((s) => s.id)).toEqual([summary.id]);
    // The chunks the killed run had uploaded were not uploaded again.
    expect(summary.newBytes).toBeLessThan(summary.bytes - (uploaded - 2) * 256 * 1024);
    expect(await verifyResult(server.admin)).toMatchObject({ ok: true });
  }, 120_000);

  it("server killed mid-upload: after a restart verify is clean and the next backup succeeds", async () => {
    const dataDir = path.join(work, "srv-server");
    const port = await freePort();
    const server = await startChildServer(dataDir, {}, port);
    servers.push(server);
    const { token } = await server.host("survivor");
    const state = path.join(work, "state-server");
    const run = agent(server, token, src, state);
    await until(() => chunkFiles(dataDir) >= 20);
    await server.kill("SIGKILL");
    const failed = await run.done;
    expect(failed.code).toBe(3);
    expect(failed.stderr).toMatch(/LB_SERVER_UNREACHABLE|Can't reach/);
    const restarted = await startChildServer(dataDir, {}, port);
    servers.push(restarted);
    const client = new ApiClient(restarted.url, token);
    expect(await client.listSnapshots()).toEqual([]);
    expect(readdirSync(path.join(dataDir, "tmp"))).toEqual([]);
    // A blob renamed into place just before the kill may be an orphan (no catalog row):
    // reported, not damage, and collected by the next prune.
    expect(await verifyResult(restarted.admin)).toMatchObject({ ok: true, orphanRows: 0 });
    const again = await agent(restarted, token, src, state).done;
    expect(again.code, again.stderr).toBe(0);
    expect(await client.listSnapshots()).toHaveLength(1);
    expect(await verifyResult(restarted.admin)).toMatchObject({ ok: true });
  }, 120_000);

  it("server stopped with SIGTERM mid-upload: it exits promptly, nothing half-written stays", async () => {
    const dataDir = path.join(work, "srv-term");
    const port = await freePort();
    const server = await startChildServer(dataDir, {}, port);
    servers.push(server);
    const { token } = await server.host("graceful");
    const run = agent(server, token, src, path.join(work, "state-term"));
    await until(() => chunkFiles(dataDir) >= 10);
    const stopping = Date.now();
    await server.kill("SIGTERM");
    expect(Date.now() - stopping).toBeLessThan(15_000);
    expect(server.child.exitCode).toBe(0);
    // Uploads in flight were finished or aborted, and an aborted one left no temp file.
    expect(readdirSync(path.join(dataDir, "tmp"))).toEqual([]);
    const failed = await run.done;
    expect(failed.code).not.toBe(0);
    const restarted = await startChildServer(dataDir, {}, port);
    servers.push(restarted);
    expect(await new ApiClient(restarted.url, token).listSnapshots()).toEqual([]);
    expect(await verifyResult(restarted.admin)).toMatchObject({ ok: true, orphanRows: 0 });
  }, 120_000);

  it.runIf(root)(
    "data directory full: a clear 507, no snapshot, the server stays up",
    async () => {
      const image = path.join(work, "small.img");
      const mount = path.join(work, "small");
      mkdirSync(mount);
      execFileSync("truncate", ["-s", "48M", image]);
      execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
      const loop = execFileSync("losetup", ["-f", "--show", image]).toString().trim();
      let server: ChildServer | null = null;
      try {
        execFileSync("mount", [loop, mount]);
        // Short sessions and no grace, so that a prune can free what the failed run stored.
        server = await startChildServer(path.join(mount, "data"), {
          LIFEBOAT_SESSION_TTL_MS: "2000",
          LIFEBOAT_GC_GRACE_MS: "0",
        });
        const { token, client } = await server.host("full");
        const result = await agent(server, token, src, path.join(work, "state-full")).done;
        expect(result.code).not.toBe(0);
        expect(result.stderr).toContain("LB_SERVER_DISK_FULL");
        expect(result.stderr).toContain(path.join(mount, "data"));
        expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
        expect(await client.listSnapshots()).toEqual([]);
        // Uploads cut off when the agent gave up leave no temp files behind.
        await until(() => readdirSync(path.join(mount, "data", "tmp")).length === 0, 10_000);
        // A small backup still goes through once it fits.
        const tiny = path.join(work, "tiny");
        mkdirSync(tiny);
        writeFileSync(path.join(tiny, "note.txt"), "small\n");
        await new Promise((resolve) => setTimeout(resolve, 2500));
        const freed = await server.admin.prune({ keepLast: 10 });
        expect(freed.gc!.chunks).toBeGreaterThan(0);
        const ok = await agent(server, token, tiny, path.join(work, "state-tiny")).done;
        expect(ok.code, ok.stderr).toBe(0);
      } finally {
        await server?.kill("SIGKILL");
        execFileSync("umount", [mount], { stdio: "ignore" });
        execFileSync("losetup", ["-d", loop]);
      }
    },
    120_000,
  );
});
