// Where capture gets its facts from. The live source (agent/capture/live-source.ts) runs the
// real tools; the recording wrapper keeps every answer in the layout's `raw` section; the
// replay source answers from such a record. So the whole capture logic runs in unit tests
// against output recorded on real machines, with no root and no disks.

import type { RawCapture, RawCommand } from "../schema.ts";

export interface ToolOutput {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface FileEntry {
  path: string;
  sizeBytes: number;
}

/** Placeholder for a tool's output-file argument (vgcfgbackup -f FILE). */
export const OUTPUT_FILE = "{output}";

export interface CaptureSource {
  /** Runs a tool; null when the tool is not installed. Non-zero exits are returned. */
  run(argv: string[]): Promise<ToolOutput | null>;
  /** Like run, but the tool writes to OUTPUT_FILE and that file's content becomes stdout. */
  runWithOutputFile(argv: string[]): Promise<ToolOutput | null>;
  readFile(path: string): Promise<string | null>;
  readBinary(path: string, length: number): Promise<Uint8Array | null>;
  /** Regular files under a directory, recursively, with paths relative to it. */
  listFiles(dir: string): Promise<FileEntry[] | null>;
  hardware(): Promise<unknown>;
}

export function emptyRaw(): RawCapture {
  return { commands: [], files: {}, binary: {}, listings: {}, hardware: null, missingTools: [] };
}

/** Wraps a source so that every answer is also written into `raw`. */
export function recordingSource(inner: CaptureSource): { source: CaptureSource; raw: RawCapture } {
  const raw = emptyRaw();
  const record = (argv: string[], output: ToolOutput | null) => {
    if (output === null) {
      const tool = argv[0]!;
      if (!raw.missingTools.includes(tool)) raw.missingTools.push(tool);
    }
    raw.commands.push({
      argv,
      exitCode: output?.exitCode ?? 127,
      stdout: output?.stdout ?? "",
      stderr: output?.stderr ?? "",
    });
    return output;
  };
  const source: CaptureSource = {
    run: async (argv) => record(argv, await inner.run(argv)),
    runWithOutputFile: async (argv) => record(argv, await inner.runWithOutputFile(argv)),
    readFile: async (path) => {
      const text = await inner.readFile(path);
      raw.files[path] = text;
      return text;
    },
    readBinary: async (path, length) => {
      const data = await inner.readBinary(path, length);
      if (data !== null) raw.binary[`${path}:${length}`] = Buffer.from(data).toString("base64");
      return data;
    },
    listFiles: async (dir) => {
      const entries = await inner.listFiles(dir);
      if (entries !== null) raw.listings[dir] = entries;
      return entries;
    },
    hardware: async () => {
      raw.hardware = await inner.hardware();
      return raw.hardware;
    },
  };
  return { source, raw };
}

/**
 * Answers from a recorded capture. Asking for something that was never recorded is an
 * error: it means the capture logic changed and the recording must be made again.
 */
export function replaySource(raw: RawCapture): CaptureSource {
  const key = (argv: string[]) => JSON.stringify(argv);
  const commands = new Map<string, RawCommand>();
  for (const command of raw.commands) commands.set(key(command.argv), command);
  const lookup = (argv: string[]): ToolOutput | null => {
    const command = commands.get(key(argv));
    if (!command) throw new Error(`not in the recording: ${argv.join(" ")}`);
    if (command.exitCode === 127 && raw.missingTools.includes(argv[0]!)) return null;
    return { exitCode: command.exitCode, stdout: command.stdout, stderr: command.stderr };
  };
  return {
    run: async (argv) => lookup(argv),
    runWithOutputFile: async (argv) => lookup(argv),
    readFile: async (path) => {
      if (!(path in raw.files)) throw new Error(`not in the recording: file ${path}`);
      return raw.files[path] ?? null;
    },
    readBinary: async (path, length) => {
      const data = raw.binary[`${path}:${length}`];
      return data === undefined ? null : new Uint8Array(Buffer.from(data, "base64"));
    },
    listFiles: async (dir) => raw.listings[dir] ?? null,
    hardware: async () => raw.hardware,
  };
}
