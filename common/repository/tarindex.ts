// A streaming indexer for the GNU tar POSIX-format streams that backup writes. It sees every
// byte of the stream as it flows to the chunker, decodes only the headers, and skips file
// data by counting, so it keeps up with the disk. For each entry it records where the entry
// starts (its first header, usually the pax 'x' header) and how many bytes it spans, which
// is what single-file restore needs to cut one entry out of a stream.
//
// Why not tar-stream's header decoder: it reads pax values as UTF-8 (non-UTF-8 names and the
// binary GNU.dumpdir would be mangled), clamps uid/gid above 262143 and keeps whole-second
// mtimes. The handful of fields needed here are decoded directly from the bytes instead.

export type EntryType = "f" | "d" | "l" | "h" | "c" | "b" | "p";

export interface DumpdirEntry {
  /** Y in this archive, N unchanged since the last level, D a directory, R/T rename, X temp. */
  control: string;
  name: Buffer;
}

export interface TarEntry {
  /** Path relative to the archive root, without "./"; the root itself is ".". Raw bytes. */
  path: Buffer;
  type: EntryType;
  /** The file's real size (for sparse files, not the archived size). */
  size: number;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, with fractions. */
  mtime: number;
  /** Byte offset of the entry's first header in the stream. */
  offset: number;
  /** Bytes from `offset` to the end of the entry's data padding. */
  length: number;
  /** Symlink target, or the hard link's target path (relative, like `path`). */
  link: Buffer | null;
  major?: number;
  minor?: number;
  dumpdir: DumpdirEntry[] | null;
  /** The entry's bytes (extension headers, header, data), when the indexer was asked to keep them. */
  raw?: Buffer;
}

const BLOCK = 512;
const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;

export function parseNumeric(field: Buffer): number {
  if (field.length > 0 && field[0]! & 0x80) {
    // GNU base-256: big-endian, the top bit of the first byte is the marker.
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  let end = 0;
  while (end < field.length && field[end] !== 0 && field[end] !== 0x20) end++;
  let start = 0;
  while (start < end && field[start] === 0x20) start++;
  const text = field.toString("latin1", start, end);
  return text === "" ? 0 : parseInt(text, 8);
}

function cString(field: Buffer): Buffer {
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

/** pax records "LEN key=value\n"; values are kept as raw bytes. */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = parseInt(data.toString("latin1", at, space), 10);
    if (!Number.isFinite(length) || length <= 0 || at + length > data.length) break;
    const record = data.subarray(space + 1, at + length - 1);
    const equals = record.indexOf(0x3d);
    if (equals > 0) records.set(record.toString("utf8", 0, equals), record.subarray(equals + 1));
    at += length;
  }
  return records;
}

export function parseDumpdir(value: Buffer): DumpdirEntry[] {
  const entries: DumpdirEntry[] = [];
  let at = 0;
  while (at < value.length && value[at] !== 0) {
    const nul = value.indexOf(0, at);
    const end = nul < 0 ? value.length : nul;
    entries.push({ control: String.fromCharCode(value[at]!), name: value.subarray(at + 1, end) });
    at = end + 1;
  }
  return entries;
}

/** "./a/b/" → "a/b"; "./" → ".". */
export function normalizeMemberPath(raw: Buffer): Buffer {
  let start = 0;
  let end = raw.length;
  while (end > 1 && raw[end - 1] === 0x2f) end--;
  if (raw[0] === 0x2e && raw[1] === 0x2f) start = 2;
  else if (raw[0] === 0x2f) start = 1;
  while (start < end && raw[start] === 0x2f) start++;
  if (start >= end || (end - start === 1 && raw[start] === 0x2e)) return Buffer.from(".");
  return Buffer.from(raw.subarray(start, end));
}

const TYPES: Record<string, EntryType> = {
  "0": "f",
  "\0": "f",
  "7": "f",
  "1": "h",
  "2": "l",
  "3": "c",
  "4": "b",
  "5": "d",
  D: "d",
  "6": "p",
};

type Phase =
  | { kind: "header" }
  | { kind: "collect"; type: string; size: number; parts: Buffer[]; got: number }
  | { kind: "skip"; left: number };

export interface TarIndexer {
  /**
   * The next bytes of the stream. The indexer keeps no view of `data` once push returns
   * (backup reads into buffers it fills again), except with `capture`, whose entries are
   * views until they are complete.
   */
  push(data: Buffer): void;
  /**
   * The entries found, handed over: the indexer keeps no reference to them (a backup of
   * millions of files frees them as soon as its index is merged), and a second call
   * returns none.
   */
  end(): TarEntry[];
}

export interface TarIndexerOptions {
  /** Which entries to return; all when not given. */
  keep?: (entry: TarEntry) => boolean;
  /** Which of the kept entries also get their raw bytes (`raw`), for replaying them later. */
  capture?: (entry: TarEntry) => boolean;
}

export function createTarIndexer(options: TarIndexerOptions = {}): TarIndexer {
  let entries: TarEntry[] = [];
  // With `capture`: views of the current entry's bytes so far (extension headers, then the
  // header); the data follows while it is skipped. Views, not copies: only an entry that is
  // captured is copied, once, when its last byte has passed.
  const capturing = options.capture !== undefined;
  let pieces: Buffer[] = [];
  let captured: TarEntry | null = null;
  const finishCapture = () => {
    if (captured) captured.raw = Buffer.concat(pieces);
    captured = null;
    pieces = [];
  };
  let offset = 0;
  let phase: Phase = { kind: "header" };
  const headerParts: Buffer[] = [];
  let headerGot = 0;
  // State of the entry being assembled from its extension headers.
  let entryStart: number | null = null;
  let pax = new Map<string, Buffer>();
  const globalPax = new Map<string, Buffer>();
  let longName: Buffer | null = null;
  let longLink: Buffer | null = null;

  const finishExtension = (type: string, data: Buffer) => {
    if (type === "x") for (const [k, v] of parsePax(data)) pax.set(k, v);
    else if (type === "g") for (const [k, v] of parsePax(data)) globalPax.set(k, v);
    else if (type === "L") longName = cString(data);
    else if (type === "K") longLink = cString(data);
  };

  const onHeader = (header: Buffer, headerOffset: number) => {
    if (header.every((b) => b === 0)) {
      phase = { kind: "header" };
      pieces = [];
      return;
    }
    const type = String.fromCharCode(header[156]!);
    const size = parseNumeric(header.subarray(124, 136));
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      if (type !== "g" && entryStart === null) entryStart = headerOffset;
      phase = { kind: "collect", type, size, parts: [], got: 0 };
      if (size === 0) {
        phase = { kind: "header" };
        finishExtension(type, Buffer.alloc(0));
      }
      return;
    }
    const get = (key: string) => pax.get(key) ?? globalPax.get(key);
    const num = (key: string, fallback: number) => {
      const value = get(key);
      return value ? Number(value.toString("latin1")) : fallback;
    };
    const archived = num("size", size);
    const sparse =
      get("GNU.sparse.major") !== undefined || get("GNU.sparse.realsize") !== undefined;
    let name = get("path") ?? (sparse ? get("GNU.sparse.name") : undefined) ?? longName;
    if (!name) {
      const base = cString(header.subarray(0, 100));
      const prefix = cString(header.subarray(345, 500));
      const isUstar = header.toString("latin1", 257, 262) === "ustar";
      name = isUstar && prefix.length > 0 ? Buffer.concat([prefix, Buffer.from("/"), base]) : base;
    }
    const kind = TYPES[type] ?? "f";
    const linkRaw = get("linkpath") ?? longLink ?? cString(header.subarray(157, 257));
    const start = entryStart ?? headerOffset;
    const dataEnd = headerOffset + BLOCK + padded(archived);
    const dumpdir = get("GNU.dumpdir");
    const entry: TarEntry = {
      path: normalizeMemberPath(name),
      type: kind,
      size: sparse ? num("GNU.sparse.realsize", num("GNU.sparse.size", archived)) : archived,
      mode: parseNumeric(header.subarray(100, 108)) & 0o7777,
      uid: num("uid", parseNumeric(header.subarray(108, 116))),
      gid: num("gid", parseNumeric(header.subarray(116, 124))),
      mtime: num("mtime", parseNumeric(header.subarray(136, 148))),
      offset: start,
      length: dataEnd - start,
      link:
        kind === "l" ? Buffer.from(linkRaw) : kind === "h" ? normalizeMemberPath(linkRaw) : null,
      dumpdir: dumpdir ? parseDumpdir(dumpdir) : null,
    };
    if (kind === "c" || kind === "b") {
      entry.major = parseNumeric(header.subarray(329, 337));
      entry.minor = parseNumeric(header.subarray(337, 345));
    }
    if (
      kind === "d" ||
      kind === "l" ||
      kind === "h" ||
      kind === "c" ||
      kind === "b" ||
      kind === "p"
    )
      entry.size = 0;
    if (options.keep === undefined || options.keep(entry)) {
      entries.push(entry);
      if (capturing && options.capture!(entry)) captured = entry;
    }
    if (!captured) pieces = [];
    entryStart = null;
    pax = new Map();
    longName = null;
    longLink = null;
    const skip = dataEnd - (headerOffset + BLOCK);
    phase = skip > 0 ? { kind: "skip", left: skip } : { kind: "header" };
    if (skip === 0) finishCapture();
  };

  return {
    push(data: Buffer) {
      let i = 0;
      while (i < data.length) {
        if (phase.kind === "skip") {
          const step = Math.min(phase.left, data.length - i);
          if (captured) pieces.push(data.subarray(i, i + step));
          phase.left -= step;
          i += step;
          offset += step;
          if (phase.left === 0) {
            phase = { kind: "header" };
            finishCapture();
          }
        } else if (phase.kind === "header") {
          const step = Math.min(BLOCK - headerGot, data.length - i);
          // A whole header is parsed at once; a header split between pushes is kept as a copy.
          const part = data.subarray(i, i + step);
          headerParts.push(step === BLOCK ? part : Buffer.from(part));
          if (capturing) pieces.push(data.subarray(i, i + step));
          headerGot += step;
          i += step;
          offset += step;
          if (headerGot === BLOCK) {
            const header = headerParts.length === 1 ? headerParts[0]! : Buffer.concat(headerParts);
            headerParts.length = 0;
            headerGot = 0;
            onHeader(header, offset - BLOCK);
          }
        } else {
          const collect = phase;
          const want = padded(collect.size) - collect.got;
          const step = Math.min(want, data.length - i);
          collect.parts.push(Buffer.from(data.subarray(i, i + step)));
          if (capturing) pieces.push(data.subarray(i, i + step));
          collect.got += step;
          i += step;
          offset += step;
          if (collect.got === padded(collect.size)) {
            phase = { kind: "header" };
            finishExtension(collect.type, Buffer.concat(collect.parts).subarray(0, collect.size));
          }
        }
      }
    },
    end() {
      const found = entries;
      entries = [];
      return found;
    },
  };
}
