// Cutting a stream for parallel extraction (agent/restore/parallel.ts): pure planning.
import { describe, expect, it } from "vitest";
import { planPieces, streamZeroOffsets } from "../../agent/restore/parallel.ts";

const MiB = 1048576;
const line = (k: number, o: number) => JSON.stringify({ p: `f${o}`, t: "f", k, o, n: 512 });

describe("streamZeroOffsets", () => {
  it("takes the offsets of stream 0's entries, in stream order", () => {
    const index = Buffer.from(
      [line(0, 4096), line(1, 0), line(0, 0), line(0, 1024), ""].join("\n"),
    );
    expect(streamZeroOffsets(index)).toEqual([0, 1024, 4096]);
  });

  it("refuses an index it can't read, rather than guessing", () => {
    expect(streamZeroOffsets(Buffer.from(`${line(0, 0)}\n{not json\n`))).toBeNull();
    expect(streamZeroOffsets(Buffer.from(`{"k":0,"o":"12"}\n`))).toBeNull();
    expect(streamZeroOffsets(Buffer.from(`{"k":0,"o":-512}\n`))).toBeNull();
    expect(streamZeroOffsets(Buffer.from(`{"k":0}\n`))).toBeNull();
  });
});

describe("planPieces", () => {
  const every = (step: number, size: number) =>
    Array.from({ length: Math.ceil(size / step) }, (_, i) => i * step);

  it("cuts at entry starts into pieces of about even size that cover the whole stream", () => {
    const size = 100 * MiB + 1234;
    const offsets = every(3 * MiB + 512, size);
    const pieces = planPieces(offsets, size, 4, 16 * MiB);
    expect(pieces).toHaveLength(4);
    expect(pieces[0]!.start).toBe(0);
    expect(pieces.at(-1)!.end).toBe(size);
    for (let i = 1; i < pieces.length; i++) {
      expect(pieces[i]!.start).toBe(pieces[i - 1]!.end);
      expect(offsets).toContain(pieces[i]!.start);
    }
    for (const piece of pieces) expect(piece.end - piece.start).toBeGreaterThan(20 * MiB);
  });

  it("keeps every piece at least the minimum, even when asked for more", () => {
    const size = 40 * MiB;
    const pieces = planPieces(every(4096, size), size, 12, 16 * MiB);
    expect(pieces).toHaveLength(2);
    for (const piece of pieces) expect(piece.end - piece.start).toBeGreaterThanOrEqual(16 * MiB);
  });

  it("makes one piece when no entry starts where a cut would go", () => {
    // One huge file: its entry starts at 0 and nothing else does.
    expect(planPieces([0], 500 * MiB, 8, 16 * MiB)).toEqual([{ start: 0, end: 500 * MiB }]);
    expect(planPieces([], 500 * MiB, 8, 16 * MiB)).toEqual([{ start: 0, end: 500 * MiB }]);
  });

  it("never cuts twice at one place when entries are far apart", () => {
    const size = 100 * MiB;
    // Two entries only: the second at 90 MiB; cuts wanted at 25, 50, 75 all land there.
    const pieces = planPieces([0, 90 * MiB], size, 4, 1);
    expect(pieces).toEqual([
      { start: 0, end: 90 * MiB },
      { start: 90 * MiB, end: size },
    ]);
  });
});
