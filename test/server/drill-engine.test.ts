// The drill orchestrator in a real server on loopback: queueing under a concurrency limit,
// the after-snapshot trigger, the RTO budget, progress as server-sent events, the drill
// token's limits, and a restart that finds a drill a killed server left running (with a
// real QEMU process and a temp disk, both gone afterwards). The VM run itself is replaced
// here by a runner that records when it ran; vm-tests/ drills real VMs.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Drill, DrillEvent } from "../../common/drills.ts";
import type { DrillOutcome, DrillRun } from "../../server/drills/engine.ts";
import { emptySnapshot, startServer } from "../helpers/server.ts";

const passed = (rtoSeconds = 42): DrillOutcome => ({
  failedPhase: null,
  reason: null,
  phases: [{ name: "rescue-boot", seconds: 1, ok: true }],
  levels: { boot: true, mounts: true, files: true, probes: true },
  probes: [],
  rtoSeconds,
  evidence: [],
});

async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("drill orchestrator", () => {
  it("runs queued drills one after the other under a limit of 1, and both finish", async () => {
    const spans: { id: string; start: number; end: number }[] = [];
    const server = await startServer({
      drills: {
        concurrency: 1,
        runner: async (run: DrillRun) => {
          const start = Date.now();
          run.phase("rescue-boot", "start");
          await new Promise((resolve) => setTimeout(resolve, 300));
          run.phase("rescue-boot", "done");
          spans.push({ id: run.drill.id, start, end: Date.now() });
          return passed();
        },
      },
    });
    cleanups.push(() => server.close());
    const web = await server.host("web1");
    const older = await emptySnapshot(web.client);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const newest = await emptySnapshot(web.client);
    const a = await server.admin.requestDrill({ host: "web1" });
    const b = await server.admin.requestDrill({ host: "web1", snapshot: older });
    expect(a.state).toBe("queued");
    expect(a.snapshot).toBe(newest); // the latest by default
    expect(b.snapshot).toBe(older);
    await until(
      async () => (await server.admin.listDrills()).every((d) => d.state === "passed"),
      "both drills",
    );
    expect(spans.map((s) => s.id)).toEqual([a.id, b.id]);
    expect(spans[1]!.start).toBeGreaterThanOrEqual(spans[0]!.end);
    const done = await server.admin.getDrill(b.id);
    expect(done.rtoSeconds).toBe(42);
    expect(done.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(done.phases.map((p) => p.name)).toEqual(["rescue-boot"]);
  });

  it("drills every new snapshot when the host asks for it, and holds drills to the RTO budget", async () => {
    const server = await startServer({ drills: { runner: async () => passed(120) } });
    cleanups.push(() => server.close());
    const db = await server.host("db1");
    await server.admin.putDrillSettings("db1", {
      schedule: "after-snapshot",
      probes: [{ name: "pg", command: "systemctl is-active postgresql", timeoutSeconds: 30 }],
      targets: { rtoSeconds: 900, rpoSeconds: 86_400 },
      maxRtoSeconds: 60,
      migrate: null,
    });
    expect((await server.admin.getDrillSettings("db1")).probes[0]!.name).toBe("pg");
    const snapshot = await emptySnapshot(db.client);
    await until(
      async () =>
        (await server.admin.listDrills({ host: "db1" })).some((d) => d.state === "failed"),
      "the triggered drill",
    );
    const [drill] = await server.admin.listDrills({ host: "db1" });
    expect(drill!.trigger).toBe("snapshot");
    expect(drill!.snapshot).toBe(snapshot);
    expect(drill!.reason).toMatch(/RTO of 120 s exceeded the budget of 60 s/);
    expect(await server.admin.drillJunit(drill!.id)).toMatch(/<failure message="[^"]*budget/);
    const html = await server.admin.report({ host: "db1", format: "html" });
    expect(html).toContain("db1");
    expect(html).toContain("budget of 60 s");
    // A bad schedule is refused when it is set, with the forms it could take.
    await expect(
      server.admin.putDrillSettings("db1", {
        ...(await server.admin.getDrillSettings("db1")),
        schedule: "sometimes",
      }),
    ).rejects.toThrow(/nightly HH:MM/);
  });

  it("streams phases and the final record as server-sent events", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const server = await startServer({
      drills: {
        runner: async (run) => {
          run.phase("rescue-boot", "start");
          await gate;
          run.phase("rescue-boot", "done");
          run.phase("layout", "start");
          run.phase("layout", "failed");
          return { ...passed(), failedPhase: "layout", reason: "no disk big enough" };
        },
      },
    });
    cleanups.push(() => server.close());
    const web = await server.host("web2");
    await emptySnapshot(web.client);
    const drill = await server.admin.requestDrill({ host: "web2" });
    const events: DrillEvent[] = [];
    const following = (async () => {
      for await (const event of server.admin.drillEvents(drill.id)) events.push(event);
    })();
    await until(() => events.length > 0, "the first event");
    release();
    await following;
    const phases = events.flatMap((e) => (e.type === "phase" ? [`${e.phase} ${e.state}`] : []));
    expect(phases).toEqual(
      expect.arrayContaining(["rescue-boot done", "layout start", "layout failed"]),
    );
    const last = events.at(-1)!;
    expect(last.type === "state" && last.drill.state).toBe("failed");
    expect(last.type === "state" && last.drill.reason).toBe("no disk big enough");
  });

  it("gives the rescue system a token that reads its own host and writes nothing", async () => {
    const seen: string[] = [];
    const server = await startServer({
      drills: {
        runner: async (run) => {
          seen.push((await run.client.getSnapshot(run.drill.snapshot)).host);
          await run.client
            .createSnapshot({ keyId: null, parent: null })
            .catch((e: Error) => seen.push(e.message));
          await run.client.listSnapshots("other").catch((e: Error) => seen.push(e.message));
          return passed();
        },
      },
    });
    cleanups.push(() => server.close());
    const web = await server.host("web3");
    await server.host("other");
    await emptySnapshot(web.client);
    const drill = await server.admin.requestDrill({ host: "web3" });
    await until(
      async () => (await server.admin.getDrill(drill.id)).state === "passed",
      "the drill",
    );
    expect(seen[0]).toBe("web3");
    expect(seen[1]).toMatch(/only reads web3's snapshots/);
    expect(seen[2]).toMatch(/can't see host other/);
    // Hosts can't start drills, and see only their own.
    await expect(web.client.requestDrill({ host: "web3" })).rejects.toThrow(/only the admin/);
    expect((await web.client.listDrills()).map((d) => d.id)).toEqual([drill.id]);
    await expect(web.client.listDrills({ host: "other" })).rejects.toThrow(/can't see host other/);
    await expect(server.admin.requestDrill({ host: "nobody" })).rejects.toThrow(/No host nobody/);
  });

  it("after a kill, a restart stops the drill's QEMU, deletes its disks and marks it failed", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "lifeboat-drill-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const first = await startServer({ dataDir, drills: { runner: async () => passed() } });
    const web = await first.host("web4");
    const snapshot = await emptySnapshot(web.client);
    // What a server killed in the rescue-boot phase leaves: the record says running, QEMU
    // still runs (its pid in the drill's folder), the disks are still there.
    const id = "dmk0stale0001a2b3c4d5e";
    const stale: Drill = {
      id,
      host: "web4",
      snapshot,
      trigger: "manual",
      state: "running",
      createdAt: new Date().toISOString(),
      startedAt: new Date().toISOString(),
      finishedAt: null,
      failedPhase: null,
      reason: null,
      phases: [
        { name: "provision", seconds: 3, ok: true },
        { name: "rescue-boot", seconds: 0, ok: true },
      ],
      levels: { boot: null, mounts: null, files: null, probes: null },
      probes: [],
      rtoSeconds: null,
      rpoSeconds: 1,
      maxRtoSeconds: null,
      evidence: [],
      migrate: null,
      failedUnits: [],
      rescueImage: null,
    };
    first.repo.catalog.saveDrill(stale);
    await first.close();
    const dir = path.join(dataDir, "drills", id);
    mkdirSync(path.join(dir, "tmp"), { recursive: true });
    writeFileSync(path.join(dir, "tmp", "disk0.qcow2"), "not really a disk");
    const qemu = spawn(
      "qemu-system-x86_64",
      ["-machine", "none", "-display", "none", "-S", "-monitor", "none"],
      {
        stdio: "ignore",
      },
    );
    const exited = new Promise<void>((resolve) => qemu.on("exit", () => resolve()));
    cleanups.push(() => void qemu.kill("SIGKILL"));
    await until(
      () => readFileSync(`/proc/${qemu.pid}/cmdline`, "utf8").includes("qemu-system"),
      "QEMU",
    );
    writeFileSync(path.join(dir, "qemu.pid"), `${qemu.pid}\n`);

    const second = await startServer({ dataDir, drills: { runner: async () => passed() } });
    cleanups.push(() => second.close());
    await exited; // stopped by the restart, not by this test
    const drill = await second.admin.getDrill(id);
    expect(drill.state).toBe("failed");
    expect(drill.failedPhase).toBe("rescue-boot");
    expect(drill.reason).toMatch(
      /server stopped during the drill \(in rescue-boot\).*stopped QEMU/,
    );
    expect(existsSync(path.join(dir, "tmp"))).toBe(false);
    expect(existsSync(path.join(dir, "qemu.pid"))).toBe(false);
  });
});
