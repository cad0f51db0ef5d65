import { describe, expect, it } from "vitest";
import { estimateBackupBytes } from "../../agent/backup/backup.ts";
import { backupTargets } from "../../agent/backup/targets.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const layout = loadLayout("vm/e-mbr-logical.json");
const chain = (sizes: number[], forceFull = false) => ({
  kind: "lifeboat/chain" as const,
  version: 1 as const,
  host: "h",
  mountPoint: "/",
  snapshot: "s",
  forceFull,
  streams: sizes.map((size, level) => ({ level, madeIn: "s", size, chunks: [] })),
});

describe("backup size estimate for the progress ETA", () => {
  it("uses the layout's used space the first time", async () => {
    const targets = await backupTargets(layout, {});
    const used = targets.map(
      (t) => layout.filesystems.find((f) => f.device === t.device)!.usage!.usedBytes,
    );
    expect(
      estimateBackupBytes(
        targets,
        targets.map(() => null),
        layout,
        7,
      ),
    ).toBe(used.reduce((a, b) => a + b, 0));
  });

  it("uses the last chain's size when a full stream starts again, and gives none for incrementals", async () => {
    const targets = (await backupTargets(layout, {})).slice(0, 1);
    expect(estimateBackupBytes(targets, [chain([100, 5, 5])], layout, 3)).toBe(110);
    expect(estimateBackupBytes(targets, [chain([100], true)], layout, 7)).toBe(100);
    expect(estimateBackupBytes(targets, [chain([100, 5])], layout, 7)).toBeNull();
    expect(estimateBackupBytes(targets, [null], null, 7)).toBeNull();
  });
});
