// Chunk ids and the blob format (docs/repository.md, "Chunks"):
//
//   "LBK1" | flags (bit 0 zstd, bit 1 AES-256-GCM) | [nonce 12] | payload | [GCM tag 16]
//
// The id is SHA-256 of the plaintext, or HMAC-SHA-256 with the id key when the repository is
// encrypted. The id is the GCM additional data, so a blob moved under another id fails to
// decrypt, and every decode re-checks the plaintext against the id: a damaged, swapped or
// foreign blob is an error, never wrong data.

import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from "node:crypto";
import { promisify } from "node:util";
import {
  constants,
  createZstdCompress,
  createZstdDecompress,
  zstdCompress,
  zstdDecompress,
  type ZstdCompress,
  type ZstdDecompress,
} from "node:zlib";
import { inputError } from "../errors.ts";
import type { RepoKeys } from "./keys.ts";

const MAGIC = Buffer.from("LBK1");
const FLAG_ZSTD = 1;
const FLAG_AES = 2;
const NONCE = 12;
const TAG = 16;
export const DEFAULT_ZSTD_LEVEL = 3;
const OUTPUT_CHUNK = 1 << 20;

const compress = promisify(zstdCompress);
const decompress = promisify(zstdDecompress);

export function chunkId(plain: Uint8Array, keys: RepoKeys | null): string {
  return keys
    ? createHmac("sha256", keys.idKey).update(plain).digest("hex")
    : createHash("sha256").update(plain).digest("hex");
}

/** SHA-256 of the stored bytes: what the server checks, with no key. */
export function blobHash(blob: Uint8Array | Uint8Array[]): string {
  const hash = createHash("sha256");
  for (const part of Array.isArray(blob) ? blob : [blob]) hash.update(part);
  return hash.digest("hex");
}

export async function encodeBlob(
  plain: Buffer,
  id: string,
  keys: RepoKeys | null,
  options: { level?: number } = {},
): Promise<Buffer> {
  return Buffer.concat(await encodeBlobParts(plain, id, keys, options));
}

type ZstdStream = ZstdCompress | ZstdDecompress;

/**
 * zstd streams kept from one blob to the next. A one-shot (de)compression builds a new
 * stream each time, and with it a context of several MB that Node reports to V8 as external
 * memory; V8 counts external memory allocated since its last full collection against the
 * old generation's room, so one context per chunk meant a full collection every few chunks.
 * A kept stream also fills its output buffer across blobs instead of starting a new one.
 */
class KeptStreams {
  readonly #idle: ZstdStream[] = [];
  readonly #make: () => ZstdStream;

  constructor(make: () => ZstdStream) {
    this.#make = make;
  }

  /**
   * `input` through one kept stream, flushed to the end of its frame (ZSTD_e_end; a
   * decompressor given a cut-off frame then fails with "unexpected end of file" instead of
   * waiting for more): the output pieces, and `done`, which gives the
   * stream back for the next blob, or drops it when the caller found the output wrong (its
   * state can't be trusted then).
   */
  async run(input: Buffer): Promise<{ parts: Buffer[]; done: (reuse: boolean) => void }> {
    const stream = this.#idle.pop() ?? this.#make();
    const parts: Buffer[] = [];
    const onData = (data: Buffer) => parts.push(data);
    let onError: (error: Error) => void = () => {};
    stream.on("data", onData);
    try {
      await new Promise<void>((resolve, reject) => {
        onError = reject;
        stream.once("error", onError);
        stream.write(input);
        stream.flush(constants.ZSTD_e_end, () => resolve());
      });
    } catch (error) {
      stream.destroy();
      throw error;
    } finally {
      stream.off("data", onData);
      stream.off("error", onError);
    }
    // The output must all have arrived by the flush's callback; anything still buffered
    // would belong to this blob and end up in the next one.
    if (stream.readableLength !== 0) {
      stream.destroy();
      throw new Error("zstd output arrived after its flush; refusing to use it");
    }
    let returned = false;
    const done = (reuse: boolean) => {
      if (returned) return;
      returned = true;
      if (reuse) this.#idle.push(stream);
      else stream.destroy();
    };
    return { parts, done };
  }

  close(): void {
    for (const stream of this.#idle.splice(0)) stream.close();
  }
}

/** Compressors for a backup's many chunks: each chunk ends its own frame (ZSTD_e_end). */
export class ZstdEncoders {
  readonly level: number;
  readonly #kept: KeptStreams;

  constructor(level = DEFAULT_ZSTD_LEVEL) {
    this.level = level;
    this.#kept = new KeptStreams(() =>
      createZstdCompress({
        chunkSize: OUTPUT_CHUNK,
        params: { [constants.ZSTD_c_compressionLevel]: level },
      }),
    );
  }

  /** One complete zstd frame holding `plain`, as the pieces the compressor produced. */
  async compress(plain: Buffer): Promise<Buffer[]> {
    const { parts, done } = await this.#kept.run(plain);
    done(true);
    return parts;
  }

  close(): void {
    this.#kept.close();
  }
}

/**
 * Decompressors for a restore's many chunks. A decompressor is used again only after its
 * output had the chunk's id: a damaged frame could leave it waiting for bytes that belong
 * to no blob.
 */
export class ZstdDecoders {
  readonly #kept = new KeptStreams(
    // A plaintext chunk is at most 4 MiB: one output buffer holds several.
    () => createZstdDecompress({ chunkSize: 4 * OUTPUT_CHUNK }),
  );

  async decompress(payload: Buffer): Promise<{ plain: Buffer; done: (reuse: boolean) => void }> {
    const { parts, done } = await this.#kept.run(payload);
    return { plain: parts.length === 1 ? parts[0]! : Buffer.concat(parts), done };
  }

  close(): void {
    this.#kept.close();
  }
}

/** The blob as the pieces it is made of, for writers that can send them without joining. */
export async function encodeBlobParts(
  plain: Buffer,
  id: string,
  keys: RepoKeys | null,
  options: { level?: number; encoders?: ZstdEncoders } = {},
): Promise<Buffer[]> {
  let flags = 0;
  let payload = [plain];
  const level = options.encoders?.level ?? options.level ?? DEFAULT_ZSTD_LEVEL;
  if (level > 0 && plain.length > 0) {
    // zlib's async forms run on the libuv thread pool, so several chunks compress at once.
    // Output buffers of 1 MiB instead of zlib's default 16 KiB pieces: far fewer callbacks
    // and far less garbage at hundreds of MB/s (kept encoders also share them across chunks).
    const packed = options.encoders
      ? await options.encoders.compress(plain)
      : [
          await compress(plain, {
            chunkSize: OUTPUT_CHUNK,
            params: { [constants.ZSTD_c_compressionLevel]: level },
          }),
        ];
    if (packed.reduce((sum, part) => sum + part.length, 0) < plain.length) {
      payload = packed;
      flags |= FLAG_ZSTD;
    }
  }
  if (!keys) return [MAGIC, Buffer.of(flags), ...payload];
  flags |= FLAG_AES;
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv("aes-256-gcm", keys.dataKey, nonce);
  cipher.setAAD(Buffer.from(id, "hex"));
  const sealed = payload.map((part) => cipher.update(part));
  const rest = cipher.final(); // empty for GCM, which is a stream mode
  return [MAGIC, Buffer.of(flags), nonce, ...sealed, rest, cipher.getAuthTag()];
}

function corrupt(id: string, why: string) {
  return inputError(
    "LB_REPO_CORRUPT_CHUNK",
    `Chunk ${id} is damaged or not what its id says: ${why}.`,
    "Run 'lifeboat verify --read-data' to see which snapshots it breaks; a later backup re-uploads it if the data still exists.",
  );
}

export async function decodeBlob(
  blob: Buffer,
  id: string,
  keys: RepoKeys | null,
  options: { decoders?: ZstdDecoders } = {},
): Promise<Buffer> {
  if (blob.length < 5 || !blob.subarray(0, 4).equals(MAGIC)) throw corrupt(id, "no LBK1 header");
  const flags = blob[4]!;
  if ((flags & ~(FLAG_ZSTD | FLAG_AES)) !== 0) throw corrupt(id, `unknown flags ${flags}`);
  let payload = blob.subarray(5);
  if (flags & FLAG_AES) {
    if (!keys) {
      throw inputError(
        "LB_KEY_REQUIRED",
        `Chunk ${id} is encrypted and no repository key was given.`,
        "Pass the key file the backup was made with (--key-file, or keyFile in the agent config).",
      );
    }
    if (payload.length < NONCE + TAG) throw corrupt(id, "too short for an encrypted blob");
    const decipher = createDecipheriv("aes-256-gcm", keys.dataKey, payload.subarray(0, NONCE));
    decipher.setAAD(Buffer.from(id, "hex"));
    decipher.setAuthTag(payload.subarray(payload.length - TAG));
    try {
      const opened = decipher.update(payload.subarray(NONCE, payload.length - TAG));
      const rest = decipher.final(); // empty for GCM; throws when the tag does not match
      payload = rest.length === 0 ? opened : Buffer.concat([opened, rest]);
    } catch {
      throw corrupt(id, "authentication failed (damaged, moved, or another key)");
    }
  } else if (keys) {
    throw corrupt(id, "not encrypted, but the repository key is in use");
  }
  let plain = payload;
  let done = (_reuse: boolean) => {};
  if (flags & FLAG_ZSTD) {
    try {
      if (options.decoders) ({ plain, done } = await options.decoders.decompress(payload));
      else plain = await decompress(payload, { chunkSize: OUTPUT_CHUNK });
    } catch {
      throw corrupt(id, "zstd data is damaged");
    }
  }
  const intact = chunkId(plain, keys) === id;
  done(intact);
  if (!intact) throw corrupt(id, "its content does not hash to its id");
  return plain;
}
