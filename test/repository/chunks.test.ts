// Chunker, keys and the blob format.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { LifeboatError } from "../../common/errors.ts";
import {
  ZstdDecoders,
  ZstdEncoders,
  blobHash,
  chunkId,
  decodeBlob,
  encodeBlob,
  encodeBlobParts,
} from "../../common/repository/blob.ts";
import { createChunker, gearTable, CHUNK_MAX, CHUNK_MIN } from "../../common/repository/chunker.ts";
import { createKeyFile, deriveKeys, loadKeyFile } from "../../common/repository/keys.ts";
import { decodeManifest, encodeManifest, type Manifest } from "../../common/repository/manifest.ts";

const small = { min: 256, avg: 1024, max: 4096 };

function chunkAll(data: Buffer, splits: number[], options = small): Buffer[] {
  const chunker = createChunker(options);
  const out: Buffer[] = [];
  let at = 0;
  for (const size of splits) {
    out.push(...chunker.push(data.subarray(at, at + size)));
    at += size;
  }
  out.push(...chunker.push(data.subarray(at)));
  out.push(...chunker.end());
  return out;
}

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-chunks-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("chunker", () => {
  const data = randomBytes(200_000);

  it("cuts the same boundaries however the input is split", () => {
    const reference = chunkAll(data, []).map((c) => c.length);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 60 }), (splits) => {
        expect(chunkAll(data, splits).map((c) => c.length)).toEqual(reference);
      }),
      { numRuns: 100 },
    );
  });

  it("keeps sizes within bounds, averages near the target, and loses no byte", () => {
    const chunks = chunkAll(data, []);
    expect(Buffer.concat(chunks)).toEqual(data);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(small.min);
      expect(c.length).toBeLessThanOrEqual(small.max);
    }
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(small.avg * 0.6);
    expect(mean).toBeLessThan(small.avg * 2);
  });

  it("after an insertion, re-synchronises: most chunks are shared", () => {
    const before = chunkAll(data, []).map((c) => c.toString("hex"));
    const edited = Buffer.concat([
      data.subarray(0, 50_000),
      Buffer.from("inserted"),
      data.subarray(50_000),
    ]);
    const after = chunkAll(edited, []).map((c) => c.toString("hex"));
    const shared = after.filter((c) => before.includes(c)).length;
    expect(shared).toBeGreaterThan(before.length * 0.8);
    expect(shared).toBeLessThan(after.length);
  });

  it("uses the production sizes by default and a keyed gear table changes boundaries", () => {
    const big = randomBytes(12 * 1048576);
    const plain = chunkAll(big, [], {} as typeof small);
    for (const c of plain.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(CHUNK_MIN);
      expect(c.length).toBeLessThanOrEqual(CHUNK_MAX);
    }
    const keyed = createChunker({ ...small, gear: gearTable(randomBytes(32)) });
    const keyedSizes = [...keyed.push(data), ...keyed.end()].map((c) => c.length);
    expect(keyedSizes).not.toEqual(chunkAll(data, []).map((c) => c.length));
  });

  it("cuts where it always has: boundaries are part of the repository format", () => {
    // A change here would make every chunk of an existing repository new again (no dedup
    // against older snapshots). The vector is a fixed SHA-256 counter stream.
    const parts: Buffer[] = [];
    for (let i = 0; i < 200_000 / 32; i++)
      parts.push(createHash("sha256").update(`lifeboat chunker vector ${i}`).digest());
    const sizes = chunkAll(Buffer.concat(parts), [4096, 777]).map((c) => c.length);
    expect(sizes.length).toBe(170);
    expect(sizes.slice(0, 12)).toEqual([
      1362, 1043, 1073, 423, 648, 1469, 1179, 1350, 1167, 1049, 1562, 554,
    ]);
    expect(createHash("sha256").update(sizes.join(",")).digest("hex")).toBe(
      "820a7938ff4118affaf7d5de00b688bae4219852801354fc9f105696448ca5ca",
    );
  });
});

describe("keys", () => {
  it("writes a 0600 key file, loads it back and derives the same keys", async () => {
    const file = path.join(work, "repo.key");
    const { keys } = await createKeyFile(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await loadKeyFile(file)).keys).toEqual(keys);
    expect(keys.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(keys.idKey.equals(keys.dataKey)).toBe(false);
    await expect(createKeyFile(file)).rejects.toMatchObject({ code: "LB_KEY_EXISTS" });
  });

  it("refuses a readable-by-others, missing or malformed key file with a hint", async () => {
    const loose = path.join(work, "loose.key");
    await createKeyFile(loose);
    chmodSync(loose, 0o644);
    await expect(loadKeyFile(loose)).rejects.toMatchObject({ code: "LB_KEY_PERMISSIONS" });
    await expect(loadKeyFile(path.join(work, "nope"))).rejects.toMatchObject({
      code: "LB_KEY_NOT_FOUND",
    });
    const bad = path.join(work, "bad.key");
    writeFileSync(
      bad,
      JSON.stringify({ kind: "lifeboat/key", version: 1, key: "AAAA", createdAt: "x" }),
      { mode: 0o600 },
    );
    await expect(loadKeyFile(bad)).rejects.toThrow(/key: must be 32 bytes/);
  });
});

describe("blobs", () => {
  const keys = deriveKeys(randomBytes(32));
  const text = Buffer.from("lifeboat ".repeat(50_000));
  const noise = randomBytes(100_000);

  it.each([
    ["text, plain", text, null],
    ["text, encrypted", text, keys],
    ["random, plain", noise, null],
    ["random, encrypted", noise, keys],
  ] as const)("round-trips %s, compressing only when it helps", async (_name, data, key) => {
    const id = chunkId(data, key);
    const blob = await encodeBlob(data, id, key);
    expect(await decodeBlob(blob, id, key)).toEqual(data);
    if (data === text) expect(blob.length).toBeLessThan(data.length / 10);
    else expect(blob.length).toBeLessThanOrEqual(data.length + 5 + (key ? 28 : 0));
    expect(blobHash(blob)).toMatch(/^[0-9a-f]{64}$/);
  });

  it("kept compressors make one whole blob per chunk, however many run at once", async () => {
    const encoders = new ZstdEncoders();
    // Sizes across the compressor's 1 MiB output buffer, compressible and not, four at a
    // time through the same few compressors: each blob must decode alone to its own chunk.
    const chunks = Array.from({ length: 24 }, (_, i) =>
      i % 3 === 0
        ? randomBytes(1000 + i * 150_000)
        : Buffer.from(`chunk ${i} `.repeat(1000 + i * 20_000)),
    );
    const ids = chunks.map((c) => chunkId(c, keys));
    const blobs: Buffer[] = [];
    for (let i = 0; i < chunks.length; i += 4) {
      const batch = chunks
        .slice(i, i + 4)
        .map((c, j) => encodeBlobParts(c, ids[i + j]!, keys, { encoders }));
      blobs.push(...(await Promise.all(batch)).map((parts) => Buffer.concat(parts)));
    }
    encoders.close();
    const decoders = new ZstdDecoders();
    for (const [i, blob] of blobs.entries()) {
      expect((await decodeBlob(blob, ids[i]!, keys)).equals(chunks[i]!)).toBe(true);
      const kept = await decodeBlob(blob, ids[i]!, keys, { decoders });
      expect(kept.equals(chunks[i]!)).toBe(true);
    }
    expect(blobs[1]!.length).toBeLessThan(chunks[1]!.length / 10);
  });

  it("kept decompressors: a cut-off frame is an error and does not spoil the next chunk", async () => {
    const decoders = new ZstdDecoders();
    const text1 = Buffer.from("first chunk ".repeat(200_000));
    const text2 = Buffer.from("second chunk ".repeat(200_000));
    const [id1, id2] = [chunkId(text1, null), chunkId(text2, null)];
    const blob1 = await encodeBlob(text1, id1, null);
    const blob2 = await encodeBlob(text2, id2, null);
    // Unencrypted, so only the zstd frame and the id stand between a damaged blob and tar.
    const cut = blob1.subarray(0, blob1.length - 40);
    await expect(decodeBlob(cut, id1, null, { decoders })).rejects.toMatchObject({
      code: "LB_REPO_CORRUPT_CHUNK",
    });
    expect((await decodeBlob(blob2, id2, null, { decoders })).equals(text2)).toBe(true);
    expect((await decodeBlob(blob1, id1, null, { decoders })).equals(text1)).toBe(true);
    decoders.close();
  });

  it("keys chunk ids: an encrypted id is not the content's SHA-256", () => {
    expect(chunkId(text, keys)).not.toBe(chunkId(text, null));
  });

  it("never returns wrong data: flipped bytes, swapped ids and wrong keys are errors", async () => {
    for (const key of [null, keys]) {
      const id = chunkId(text, key);
      const blob = await encodeBlob(text, id, key);
      // Every byte of the blob, header, nonce, payload and tag alike. Encrypted blobs fail on
      // any change (GCM). A plain blob may survive a flip that zstd ignores (e.g. the window
      // size bits of its frame header), but only with exactly the right content.
      let accepted = 0;
      for (let at = 0; at < blob.length; at++) {
        const bad = Buffer.from(blob);
        bad[at] = bad[at]! ^ (1 << (at % 8));
        const result = await decodeBlob(bad, id, key).catch((error: unknown) => error);
        if (result instanceof LifeboatError) continue;
        expect(key).toBeNull();
        expect((result as Buffer).equals(text)).toBe(true);
        accepted++;
      }
      expect(accepted).toBeLessThanOrEqual(2);
      await expect(decodeBlob(blob.subarray(0, blob.length - 1), id, key)).rejects.toBeInstanceOf(
        LifeboatError,
      );
      const otherId = chunkId(noise, key);
      await expect(decodeBlob(blob, otherId, key)).rejects.toMatchObject({
        code: "LB_REPO_CORRUPT_CHUNK",
      });
    }
    const id = chunkId(text, keys);
    const sealed = await encodeBlob(text, id, keys);
    await expect(decodeBlob(sealed, id, deriveKeys(randomBytes(32)))).rejects.toMatchObject({
      code: "LB_REPO_CORRUPT_CHUNK",
    });
    await expect(decodeBlob(sealed, id, null)).rejects.toMatchObject({ code: "LB_KEY_REQUIRED" });
  });
});

describe("manifest", () => {
  it("round-trips through an encrypted blob and rejects a foreign document", async () => {
    const keys = deriveKeys(randomBytes(32));
    const manifest: Manifest = {
      kind: "lifeboat/snapshot",
      version: 1,
      id: "s1",
      host: "web1",
      createdAt: new Date(0).toISOString(),
      createdBy: "test",
      parent: null,
      keyId: keys.keyId,
      layout: null,
      luksHeaders: [],
      filesystems: [
        {
          mountPoint: "/",
          device: "/dev/vda2",
          fsType: "ext4",
          excludes: [],
          streams: [{ level: 0, madeIn: "s1", size: 10, chunks: [["a".repeat(64), 10]] }],
          index: { entries: 1, chunks: [["b".repeat(64), 5]] },
          state: { chunks: [] },
        },
      ],
      hooks: [],
      stats: { bytes: 10, newBytes: 10, files: 1, seconds: 0.1 },
    };
    const { id, blob } = await encodeManifest(manifest, keys);
    expect(await decodeManifest(blob, id, keys)).toEqual(manifest);
    const foreign = Buffer.from(JSON.stringify({ kind: "other" }));
    const foreignId = chunkId(foreign, keys);
    await expect(
      decodeManifest(await encodeBlob(foreign, foreignId, keys), foreignId, keys),
    ).rejects.toMatchObject({ code: "LB_REPO_BAD_MANIFEST" });
    const notJson = Buffer.from("{truncated");
    const notJsonId = chunkId(notJson, keys);
    await expect(
      decodeManifest(await encodeBlob(notJson, notJsonId, keys), notJsonId, keys),
    ).rejects.toMatchObject({ code: "LB_REPO_BAD_MANIFEST" });
  });
});
