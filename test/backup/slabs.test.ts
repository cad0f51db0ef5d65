// SlabChunkReader: chunks cut in place must be exactly the chunks the plain chunker cuts, and
// a slab may only be filled again once every chunk cut from it has been released.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SlabChunkReader, type StreamChunk } from "../../agent/backup/slabs.ts";
import { createChunker } from "../../common/repository/chunker.ts";

const small = { min: 256, avg: 1024, max: 4096 };
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-slabs-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Serve `data` on a Unix socket in pieces of random sizes; connect `reader` to it. */
async function feed(data: Buffer, reader: SlabChunkReader, name: string): Promise<() => void> {
  const file = path.join(work, name);
  const server = net.createServer(async (socket) => {
    for (let at = 0; at < data.length;) {
      const size = 1 + Math.floor(Math.random() * 20_000);
      const piece = data.subarray(at, at + size);
      at += piece.length;
      if (!socket.write(piece)) await new Promise((r) => socket.once("drain", r));
    }
    socket.end();
  });
  await new Promise<void>((resolve) => server.listen(file, resolve));
  const socket = net.connect({ path: file, onread: reader.onread });
  reader.attach(socket);
  return () => server.close();
}

function reference(data: Buffer): Buffer[] {
  const chunker = createChunker(small);
  return [...chunker.push(data), ...chunker.end()].map((c) => Buffer.from(c));
}

describe("SlabChunkReader", () => {
  it("cuts the chunker's chunks, and reuses slabs only after every chunk of them is released", async () => {
    const data = randomBytes(3 * 1048576);
    const expected = reference(data);
    const seen: Buffer[] = [];
    const reader = new SlabChunkReader({
      chunker: small,
      slabBytes: small.max + 64 * 1024,
      queueBytes: 8 * 1024,
      onData: (piece) => seen.push(Buffer.from(piece)),
    });
    const close = await feed(data, reader, "a.sock");
    // Hold up to 40 chunks at a time and release them in random order, each checked against
    // the reference just before its release: a slab filled again too early shows up here.
    const held: { chunk: StreamChunk; index: number }[] = [];
    let index = 0;
    let checked = 0;
    const releaseOne = () => {
      const { chunk, index: i } = held.splice(Math.floor(Math.random() * held.length), 1)[0]!;
      expect(chunk.data.equals(expected[i]!)).toBe(true);
      chunk.release();
      checked++;
    };
    for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
      held.push({ chunk, index: index++ });
      if (held.length > 40) releaseOne();
      if (index % 97 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    while (held.length > 0) releaseOne();
    close();
    expect(index).toBe(expected.length);
    expect(checked).toBe(expected.length);
    expect(Buffer.concat(seen).equals(data)).toBe(true);
    expect(reader.bytes).toBe(data.length);
    // 3 MiB through 68 KiB slabs: about 45 slabs' worth, from a handful of buffers.
    expect(reader.allocated).toBeGreaterThan(1);
    expect(reader.allocated).toBeLessThan(15);
  });

  it("ends with the short last chunk, and an empty stream has no chunks", async () => {
    const data = randomBytes(100);
    const reader = new SlabChunkReader({ chunker: small, slabBytes: small.max + 64 * 1024 });
    const close = await feed(data, reader, "b.sock");
    const chunk = await reader.next();
    expect(chunk?.data.equals(data)).toBe(true);
    chunk?.release();
    expect(await reader.next()).toBeNull();
    close();

    const empty = new SlabChunkReader({ chunker: small, slabBytes: small.max + 64 * 1024 });
    const closeEmpty = await feed(Buffer.alloc(0), empty, "c.sock");
    expect(await empty.next()).toBeNull();
    closeEmpty();
  });

  it("stops with the error of a failing observer, and refuses slabs too small for a chunk", async () => {
    const reader = new SlabChunkReader({
      chunker: small,
      slabBytes: small.max + 64 * 1024,
      onData: () => {
        throw new Error("index broke");
      },
    });
    const close = await feed(randomBytes(50_000), reader, "d.sock");
    await expect(reader.next()).rejects.toThrow("index broke");
    close();
    expect(() => new SlabChunkReader({ chunker: small, slabBytes: 8192 })).toThrow(RangeError);
  });
});
