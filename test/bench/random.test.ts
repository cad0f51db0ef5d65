import { zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { Keystream, Prng, TextGenerator } from "../../bench/lib/random.ts";

describe("Keystream", () => {
  it("gives the same bytes for the same label, whatever the read sizes", () => {
    const a = new Keystream("file-a");
    const b = new Keystream("file-a");
    const whole = a.bytes(3 * 1024 * 1024 + 17);
    const pieces = Buffer.concat([b.bytes(5), b.bytes(2 * 1024 * 1024), b.bytes(1024 * 1024 + 12)]);
    expect(pieces.equals(whole)).toBe(true);
  });

  it("gives different, incompressible bytes for another label", () => {
    const a = new Keystream("file-a").bytes(64 * 1024);
    const b = new Keystream("file-b").bytes(64 * 1024);
    expect(a.equals(b)).toBe(false);
    expect(zstdCompressSync(a).length).toBeGreaterThan(a.length * 0.99);
  });
});

describe("Prng", () => {
  it("draws distinct indices in range, the same ones every time", () => {
    const first = new Prng("change").sample(1000, 50);
    expect(new Prng("change").sample(1000, 50)).toEqual(first);
    expect(new Set(first).size).toBe(50);
    expect(first.every((i) => i >= 0 && i < 1000)).toBe(true);
    expect(new Prng("other").sample(1000, 50)).not.toEqual(first);
  });

  it("refuses impossible requests", () => {
    expect(() => new Prng("x").sample(3, 4)).toThrow(RangeError);
    expect(() => new Prng("x").below(0)).toThrow(RangeError);
  });
});

describe("TextGenerator", () => {
  it("writes exactly the asked length of compressible ASCII lines", () => {
    const text = new TextGenerator("t").text(20_000);
    expect(text.length).toBe(20_000);
    expect(/^[a-z \n]+$/.test(text.toString("latin1"))).toBe(true);
    const lines = text.toString("latin1").split("\n");
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(72);
    expect(zstdCompressSync(text).length).toBeLessThan(text.length * 0.6);
    expect(new TextGenerator("t").text(20_000).equals(text)).toBe(true);
  });
});
