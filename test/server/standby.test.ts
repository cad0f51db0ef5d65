// Warm standby images on disk, with real qemu-img: a passed drill's disks are taken over,
// a newer one replaces them in one rename, the cap drops the oldest image and says why, and
// export converts for another hypervisor. Booting a standby is in vm-tests/drill-faults.ts.
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { StandbyManager } from "../../server/drills/standby.ts";
import type { VmShape } from "../../server/drills/shape.ts";

const MiB = 1024 * 1024;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A data directory, and a folder in it where "drills" leave their disks. */
function workDir() {
  const data = mkdtempSync(path.join(tmpdir(), "lifeboat-standby-"));
  dirs.push(data);
  const drillTmp = path.join(data, "drill-tmp");
  mkdirSync(drillTmp);
  return { data, drillTmp };
}

/** A qcow2 disk of 16 MiB virtual size holding `dataMiB` of random data. */
function disk(dir: string, name: string, dataMiB: number): string {
  const raw = path.join(dir, `${name}.raw`);
  writeFileSync(
    raw,
    Buffer.concat([randomBytes(dataMiB * MiB), Buffer.alloc((16 - dataMiB) * MiB)]),
  );
  const qcow2 = path.join(dir, `${name}.qcow2`);
  execFileSync("qemu-img", ["convert", "-O", "qcow2", raw, qcow2]);
  rmSync(raw);
  return qcow2;
}

const shape: VmShape = {
  firmware: "bios",
  secureBoot: false,
  memoryMiB: 512,
  disks: [{ sizeBytes: 16 * MiB, bus: "virtio", stands: "/dev/vda" }],
};

/** A passed drill whose one disk holds `dataMiB` of data, kept as the host's standby. */
async function keepDrill(
  standby: StandbyManager,
  drillTmp: string,
  kept: { host: string; drill: string; snapshot: string; dataMiB: number; rto: number | null },
): Promise<string> {
  const file = disk(drillTmp, kept.drill, kept.dataMiB);
  await standby.keep({
    host: kept.host,
    drill: kept.drill,
    snapshot: kept.snapshot,
    shape,
    disks: [file],
    vars: undefined,
    drillRtoSeconds: kept.rto,
  });
  return file;
}

/** Two hosts' images of 4 MiB of data each: "old" kept first, then "new". */
async function keepOldThenNew(standby: StandbyManager, drillTmp: string) {
  await keepDrill(standby, drillTmp, {
    host: "old",
    drill: "d1",
    snapshot: "s1",
    dataMiB: 4,
    rto: 100,
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  await keepDrill(standby, drillTmp, {
    host: "new",
    drill: "d2",
    snapshot: "s2",
    dataMiB: 4,
    rto: 100,
  });
}

describe("warm standby images", () => {
  it("takes over a passed drill's disks, and a newer drill replaces them", async () => {
    const { data, drillTmp } = workDir();
    const standby = new StandbyManager(data, 1024 * MiB);
    const first = await keepDrill(standby, drillTmp, {
      host: "web1",
      drill: "d1",
      snapshot: "s1",
      dataMiB: 2,
      rto: 150,
    });
    expect(existsSync(first)).toBe(false); // moved, not copied
    await keepDrill(standby, drillTmp, {
      host: "web1",
      drill: "d2",
      snapshot: "s2",
      dataMiB: 2,
      rto: 140,
    });
    const state = standby.state();
    expect(state.images.map((i) => [i.host, i.drill, i.snapshot])).toEqual([["web1", "d2", "s2"]]);
    expect(state.images[0]!.bytes).toBeGreaterThanOrEqual(2 * MiB);
    expect(state.usedBytes).toBe(state.images[0]!.bytes);
    // Nothing half-done is left next to it.
    expect(readdirSync(path.join(data, "standby"))).toEqual(["web1"]);
  });

  it("drops the oldest image to stay under the cap, never the one just kept, and says why", async () => {
    const { data, drillTmp } = workDir();
    const standby = new StandbyManager(data, 7 * MiB);
    await keepOldThenNew(standby, drillTmp);
    const state = standby.state();
    expect(state.images.map((i) => i.host)).toEqual(["new"]);
    expect(state.dropped).toHaveLength(1);
    expect(state.dropped[0]!.host).toBe("old");
    expect(state.dropped[0]!.reason).toMatch(
      /standby cap of 7\.0 MiB \(it was the oldest image, 4\.\d MiB\)/,
    );
  });

  it("counts an export against the cap, and makes room by dropping the oldest image", async () => {
    const { data, drillTmp } = workDir();
    const standby = new StandbyManager(data, 10 * MiB);
    await keepOldThenNew(standby, drillTmp);
    expect(standby.state().images.map((i) => i.host)).toEqual(["new", "old"]);
    await standby.export("new", "qcow2");
    const state = standby.state();
    expect(state.images.map((i) => i.host)).toEqual(["new"]);
    expect(state.dropped[0]!.host).toBe("old");
    expect(state.usedBytes).toBeGreaterThanOrEqual(8 * MiB);
    expect(standby.exportFile("new", "disk0.qcow2")).not.toBeNull();
  });

  it("exports qcow2 and raw, and refuses hosts without an image", async () => {
    const { data, drillTmp } = workDir();
    const standby = new StandbyManager(data, 1024 * MiB);
    await keepDrill(standby, drillTmp, {
      host: "db1",
      drill: "d1",
      snapshot: "s1",
      dataMiB: 1,
      rto: null,
    });
    const raw = await standby.export("db1", "raw");
    expect(raw.files.map((f) => path.basename(f))).toEqual(["disk0.raw"]);
    expect(statSync(raw.files[0]!).size).toBe(16 * MiB);
    const qcow2 = await standby.export("db1", "qcow2");
    const info = JSON.parse(
      execFileSync("qemu-img", ["info", "--output=json", qcow2.files[0]!], { encoding: "utf8" }),
    );
    expect(info["virtual-size"]).toBe(16 * MiB);
    expect(info["backing-filename"]).toBeUndefined(); // self-contained
    expect(standby.exportFile("db1", "disk0.qcow2")).toBe(qcow2.files[0]);
    // The export waiting to be fetched counts against the cap like the image.
    const state = standby.state();
    expect(state.usedBytes).toBeGreaterThanOrEqual(state.images[0]!.bytes + MiB);
    expect(standby.exportFile("db1", "../standby.json")).toBeNull();
    await expect(
      standby.start("nobody", { network: "isolated", hostfwd: [], timeoutSeconds: 5 }),
    ).rejects.toThrow(/no standby image of nobody/);
  });
});
