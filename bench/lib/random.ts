// Deterministic bytes and choices for the benchmark dataset. Everything comes from an
// AES-256-CTR keystream under a fixed key, so every machine builds the same dataset and the
// same 1% of files changes between backups, with no seed to keep anywhere.

import { createCipheriv, createHash } from "node:crypto";

const KEY = createHash("sha256").update("lifeboat-bench/dataset/v1").digest();
const ZEROS = Buffer.alloc(1024 * 1024);

/** An endless keystream for one label (file name, purpose); the same label, the same bytes. */
export class Keystream {
  readonly #cipher;

  constructor(label: string) {
    const iv = createHash("sha256").update(label).digest().subarray(0, 16);
    this.#cipher = createCipheriv("aes-256-ctr", KEY, iv);
  }

  /** The next `length` bytes of the stream (incompressible). */
  bytes(length: number): Buffer {
    const parts: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const n = Math.min(left, ZEROS.length);
      parts.push(this.#cipher.update(ZEROS.subarray(0, n)));
      left -= n;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

/** Deterministic integers drawn from a keystream, buffered. */
export class Prng {
  readonly #stream: Keystream;
  #buffer: Buffer = Buffer.alloc(0);
  #offset = 0;

  constructor(label: string) {
    this.#stream = new Keystream(`prng:${label}`);
  }

  uint32(): number {
    if (this.#offset + 4 > this.#buffer.length) {
      this.#buffer = this.#stream.bytes(64 * 1024);
      this.#offset = 0;
    }
    const value = this.#buffer.readUInt32LE(this.#offset);
    this.#offset += 4;
    return value;
  }

  /** An integer in [0, n). The modulo bias is irrelevant for n far below 2^32. */
  below(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new RangeError(`below() needs an integer in [1, 2^32], got ${n}`);
    }
    return this.uint32() % n;
  }

  /** `count` distinct indices of [0, n), in the order drawn (a partial Fisher-Yates shuffle). */
  sample(n: number, count: number): number[] {
    if (count > n) throw new RangeError(`cannot draw ${count} distinct values from ${n}`);
    const pool = Array.from({ length: n }, (_, i) => i);
    for (let i = 0; i < count; i++) {
      const j = i + this.below(n - i);
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    return pool.slice(0, count);
  }
}

/** Text that compresses and deduplicates like real config files and logs: words from a fixed vocabulary. */
export class TextGenerator {
  readonly #prng: Prng;
  readonly #words: string[];

  constructor(label: string) {
    this.#prng = new Prng(`text:${label}`);
    const vocabulary = new Prng("text:vocabulary");
    const letters = "etaoinshrdlucmfwypvbgkqjxz";
    this.#words = Array.from({ length: 4096 }, () => {
      const length = 2 + vocabulary.below(9);
      let word = "";
      // Skewed towards common letters, as in natural text.
      for (let i = 0; i < length; i++) word += letters[Math.floor(vocabulary.below(676) ** 0.5)];
      return word;
    });
  }

  /** Exactly `length` bytes of ASCII lines. */
  text(length: number): Buffer {
    const out = Buffer.alloc(length);
    let at = 0;
    let column = 0;
    while (at < length) {
      // Zipf-like: a few words are very common.
      const rank = Math.floor(this.#words.length * (this.#prng.below(1 << 16) / (1 << 16)) ** 3);
      const word = this.#words[rank]!;
      const newline = column > 0 && column + 1 + word.length > 72;
      const piece = newline ? `\n${word}` : column === 0 ? word : ` ${word}`;
      at += out.write(piece, at, "latin1");
      column = newline ? word.length : column + piece.length;
    }
    return out;
  }
}
