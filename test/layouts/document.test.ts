import { describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import { parseLayout } from "../../layouts/document.ts";
import { loadLayout } from "../helpers/fixtures.ts";

const good = loadLayout("host/gpt-mixed.json");
const copy = () => JSON.parse(JSON.stringify(good)) as Record<string, unknown>;

function rejection(value: unknown): LifeboatError {
  try {
    parseLayout(value, "layout.json");
  } catch (error) {
    if (error instanceof LifeboatError) return error;
    throw error;
  }
  throw new Error("expected a rejection");
}

describe("parseLayout", () => {
  it("accepts a captured document", () => {
    expect(parseLayout(copy(), "x").disks[0]!.device).toBe("/dev/loop0");
  });

  it("names the field that is wrong", () => {
    const doc = copy() as { disks: { sizeBytes: unknown }[] };
    doc.disks[0]!.sizeBytes = "big";
    const error = rejection(doc);
    expect(error.code).toBe("LB_LAYOUT_INVALID");
    expect(error.kind).toBe("input");
    expect(error.message).toContain("field disks[0].sizeBytes");
  });

  it("names a missing field", () => {
    const doc = copy() as { boot: Record<string, unknown> };
    delete doc.boot.firmware;
    expect(rejection(doc).message).toContain("field boot.firmware");
  });

  it("rejects a newer version with a hint to upgrade, an older one with a hint to recapture", () => {
    const newer = rejection({ ...copy(), version: 2 });
    expect(newer.code).toBe("LB_LAYOUT_VERSION");
    expect(newer.hint).toContain("Upgrade");
    const older = rejection({ ...copy(), version: 0 });
    expect(older.hint).toContain("Capture the layout again");
  });

  it("rejects something that is not a layout document", () => {
    expect(rejection([]).message).toContain("expected a JSON object");
    expect(rejection({ kind: "other" }).message).toContain('field "kind"');
  });
});
