// The three contenders, each behind the same small interface: create a repository, back up
// the dataset (timed), restore the newest snapshot into an empty directory (timed), and say
// where its repository and its client-side state live.

import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { z } from "zod";
import { environmentError } from "../../common/errors.ts";
import { runTool } from "../../common/exec.ts";
import { NODE_FLAGS } from "../../common/runtime.ts";
import { LIFEBOAT_VERSION } from "../../common/version.ts";
import { bundleCli } from "../../scripts/bundle.ts";
import { measure, peakOfProcess, resetPeak } from "./measure.ts";

export const TOOL_NAMES = ["restic", "borg", "lifeboat"] as const;
export type ToolName = (typeof TOOL_NAMES)[number];

export interface PhaseMeasure {
  seconds: number;
  /** What the comparison uses: the sum of `peaks`. */
  peakBytes: number;
  /** Peak memory per process (one for restic and borg; agent and server for Lifeboat). */
  peaks: Record<string, number>;
}

export interface Contender {
  name: ToolName;
  version: string;
  /** How it is configured, in words, for the report. */
  settings: string;
  repositoryDir: string;
  /** Client-side caches and state (not part of the repository size). */
  clientStateDir: string;
  init(): Promise<void>;
  backup(source: string, run: number): Promise<PhaseMeasure>;
  restore(target: string): Promise<PhaseMeasure>;
  /** A restore that reads the repository directory itself, where the tool has a second way. */
  restoreFromDirectory?(target: string): Promise<PhaseMeasure>;
  stop(): Promise<void>;
}

const PASSWORD = "lifeboat-bench-password";

function single(seconds: number, peakBytes: number, process: string): PhaseMeasure {
  return { seconds, peakBytes, peaks: { [process]: peakBytes } };
}

export async function restic(dir: string): Promise<Contender> {
  const repositoryDir = path.join(dir, "repo");
  const clientStateDir = path.join(dir, "cache");
  const env = {
    RESTIC_REPOSITORY: repositoryDir,
    RESTIC_PASSWORD: PASSWORD,
    RESTIC_CACHE_DIR: clientStateDir,
  };
  const version = (await runTool(["restic", "version"])).stdout.trim();
  return {
    name: "restic",
    version,
    settings: "repository version 2, --compression auto, AES-256-CTR + Poly1305 (always on)",
    repositoryDir,
    clientStateDir,
    async init() {
      await runTool(["restic", "init", "--repository-version", "2"], { env });
    },
    async backup(source) {
      const m = await measure(["restic", "backup", "--quiet", "--compression", "auto", "."], {
        cwd: source,
        env,
      });
      return single(m.seconds, m.peakBytes, "restic");
    },
    async restore(target) {
      const m = await measure(["restic", "restore", "latest", "--target", target], { env });
      return single(m.seconds, m.peakBytes, "restic");
    },
    async stop() {},
  };
}

export async function borg(dir: string): Promise<Contender> {
  const repositoryDir = path.join(dir, "repo");
  const clientStateDir = path.join(dir, "base");
  const env = {
    BORG_REPO: repositoryDir,
    BORG_PASSPHRASE: PASSWORD,
    BORG_BASE_DIR: clientStateDir,
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
  const version = (await runTool(["borg", "--version"])).stdout.trim();
  let latest: string | undefined;
  return {
    name: "borg",
    version,
    settings: "-e repokey (AES-256-CTR, HMAC-SHA-256 ids), --compression zstd,3, --numeric-ids",
    repositoryDir,
    clientStateDir,
    async init() {
      await mkdir(clientStateDir, { recursive: true });
      await runTool(["borg", "init", "-e", "repokey"], { env });
    },
    async backup(source, run) {
      const archive = `bench-${run}`;
      const m = await measure(
        ["borg", "create", "--compression", "zstd,3", "--numeric-ids", `::${archive}`, "."],
        { cwd: source, env },
      );
      latest = archive;
      return single(m.seconds, m.peakBytes, "borg");
    },
    async restore(target) {
      if (latest === undefined) throw new Error("borg: restore before any backup");
      const m = await measure(["borg", "extract", "--numeric-ids", `::${latest}`], {
        cwd: target,
        env,
      });
      return single(m.seconds, m.peakBytes, "borg");
    },
    async stop() {},
  };
}

const HostAdded = z.object({ token: z.string().min(1) });
const BackupDone = z.object({ id: z.string().min(1) });

/**
 * Lifeboat through its CLI: a server on the loopback interface, a host token, a key file
 * (encryption on, as with restic and borg), and the agent backing up a path.
 */
export async function lifeboat(dir: string, projectRoot: string): Promise<Contender> {
  // Agent and server run as the bundled CLI on the pinned Node, as hosts run it (rescue
  // images and installed agents carry dist/lifeboat.mjs, and the server runs from it too):
  // no TypeScript stripped, no modules resolved at start.
  const bundle = await bundleCli(path.join(dir, "lifeboat.mjs"));
  const bin = [process.execPath, ...NODE_FLAGS, bundle]; // the pinned Node the bench runs on
  const repositoryDir = path.join(dir, "server-data");
  const clientStateDir = path.join(dir, "agent-state");
  const keyFile = path.join(dir, "repository.key");
  const serverLog = path.join(dir, "server.log");
  const env = { LIFEBOAT_STATE_DIR: clientStateDir };
  const commit = await runTool(["git", "-C", projectRoot, "rev-parse", "--short", "HEAD"], {
    allowFailure: true,
  });
  let server: ResultPromise | undefined;
  let url = "";
  let token = "";
  let latest: string | undefined;
  const connection = () => ["--server", url, "--token", token, "--key-file", keyFile];
  const serverPid = () => {
    if (server?.pid === undefined) throw new Error("lifeboat: the server is not running");
    return server.pid;
  };
  /** The agent's run is measured by GNU time, the server's by its VmHWM over the same span. */
  const withServer = async (run: () => Promise<{ seconds: number; peakBytes: number }>) => {
    const pid = serverPid();
    resetPeak(pid);
    const m = await run();
    const serverPeak = peakOfProcess(pid);
    return {
      seconds: m.seconds,
      peakBytes: m.peakBytes + serverPeak,
      peaks: { agent: m.peakBytes, server: serverPeak },
    };
  };

  return {
    name: "lifeboat",
    version: `${LIFEBOAT_VERSION}${commit.exitCode === 0 ? ` (${commit.stdout.trim()})` : ""}`,
    settings: "encrypted (AES-256-GCM, HMAC-SHA-256 ids), zstd, path backup over HTTP on 127.0.0.1",
    repositoryDir,
    clientStateDir,
    async init() {
      await mkdir(repositoryDir, { recursive: true });
      await mkdir(clientStateDir, { recursive: true });
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      const log = createWriteStream(serverLog);
      server = execa(
        bin[0]!,
        [...bin.slice(1), "server", "--data", repositoryDir, "--listen", `127.0.0.1:${port}`],
        {
          stdin: "ignore",
          stdout: ["pipe"],
          stderr: ["pipe"],
          reject: false,
          env: { LC_ALL: "C" },
          extendEnv: true,
        },
      );
      server.stdout?.pipe(log);
      server.stderr?.pipe(log);
      await waitForServer(port, path.join(repositoryDir, "admin.token"), server, serverLog);
      const added = await runTool([
        ...bin,
        "host",
        "add",
        "bench",
        "--server",
        url,
        "--token-file",
        path.join(repositoryDir, "admin.token"),
        "--json",
      ]);
      token = parseJsonOutput(HostAdded, added.stdout, "lifeboat host add --json").token;
      await runTool([...bin, "key", "create", keyFile]);
    },
    async backup(source) {
      return withServer(async () => {
        const m = await measure(
          [
            ...bin,
            "backup",
            ...connection(),
            "--host",
            "bench",
            "--no-layout",
            "--path",
            source,
            "--json",
          ],
          { env },
        );
        latest = parseJsonOutput(BackupDone, m.stdout, "lifeboat backup --json").id;
        return m;
      });
    },
    async restore(target) {
      if (latest === undefined) throw new Error("lifeboat: restore before any backup");
      const id = latest;
      return withServer(() =>
        measure([...bin, "restore", id, "--target", target, ...connection()], { env }),
      );
    },
    async restoreFromDirectory(target) {
      if (latest === undefined) throw new Error("lifeboat: restore before any backup");
      // The server is left running but takes no part: the agent reads its data directory.
      const m = await measure(
        [
          ...bin,
          "restore",
          latest,
          "--target",
          target,
          "--from",
          repositoryDir,
          "--key-file",
          keyFile,
        ],
        { env },
      );
      return single(m.seconds, m.peakBytes, "agent");
    },
    async stop() {
      if (server === undefined) return;
      server.kill("SIGTERM");
      const timer = setTimeout(() => server?.kill("SIGKILL"), 10_000);
      await server;
      clearTimeout(timer);
      server = undefined;
    },
  };
}

/** The one JSON object a `--json` command prints (the last line that parses, to be lenient about logs). */
export function parseJsonOutput<T>(schema: z.ZodType<T>, stdout: string, what: string): T {
  const candidates = [stdout.trim(), ...stdout.trim().split("\n").reverse()];
  for (const text of candidates) {
    try {
      const parsed = schema.safeParse(JSON.parse(text));
      if (parsed.success) return parsed.data;
    } catch {
      // not JSON: try the next candidate
    }
  }
  throw environmentError(
    "LB_BENCH_BAD_OUTPUT",
    `${what} printed no JSON object of the expected shape: ${stdout.trim().slice(0, 300)}`,
    "Check that the Lifeboat CLI in this tree supports the command as docs describe it.",
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

async function waitForServer(port: number, tokenFile: string, server: ResultPromise, log: string) {
  let exited = false;
  void server.then(() => (exited = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited) break;
    if (existsSync(tokenFile) && (await canConnect(port))) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const tail = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").slice(-10) : [];
  throw environmentError(
    "LB_BENCH_SERVER",
    `The Lifeboat server ${exited ? "exited" : "did not answer on 127.0.0.1:" + port + " within 60 s"}:\n  ${tail.join("\n  ")}`,
    `See ${log}.`,
  );
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
