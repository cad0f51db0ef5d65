// A real Lifeboat server for tests: in-process on 127.0.0.1 with a temp data directory, or
// as a child process (bin/lifeboat server) where a test needs to kill it.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createServer, type ServerOptions } from "../../server/app.ts";
import type { Repository } from "../../server/repository.ts";
import { ApiClient } from "../../agent/client/api.ts";

export interface TestServer {
  url: string;
  dataDir: string;
  adminToken: string;
  admin: ApiClient;
  /** Add a host and return a client with its token. */
  host(name: string): Promise<{ token: string; client: ApiClient }>;
  /** A graceful stop (requests in flight finish). */
  close(): Promise<void>;
  /** An abrupt stop: connections are cut at once. */
  kill(): Promise<void>;
}

const ROOT = path.resolve(import.meta.dirname, "..", "..");

async function withHosts(
  url: string,
  dataDir: string,
  close: () => Promise<void>,
  kill: () => Promise<void>,
): Promise<TestServer> {
  const adminToken = readFileSync(path.join(dataDir, "admin.token"), "utf8").trim();
  const admin = new ApiClient(url, adminToken);
  return {
    url,
    dataDir,
    adminToken,
    admin,
    async host(name) {
      const { token } = await admin.addHost(name);
      return { token, client: new ApiClient(url, token) };
    },
    close,
    kill,
  };
}

/** An in-process server; `repo` reaches into its catalog and store, `logs` is its log. */
export async function startServer(
  options: Partial<ServerOptions> & { dataDir?: string } = {},
): Promise<TestServer & { logs: string[]; repo: Repository }> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), "lifeboat-server-"));
  const logs: string[] = [];
  const { app, repo } = await createServer({
    ...options,
    dataDir,
    logger: {
      level: "info",
      redact: ["req.headers.authorization"],
      stream: { write: (line: string) => void logs.push(line) },
    },
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  let closed: Promise<void> | null = null;
  const stop = (abrupt: boolean) => {
    if (abrupt) app.server.closeAllConnections();
    closed ??= app.close().then(() => {
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    });
    return closed;
  };
  const server = await withHosts(
    `http://127.0.0.1:${port}`,
    dataDir,
    () => stop(false),
    () => stop(true),
  );
  return { ...server, logs, repo };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

export interface ChildServer extends TestServer {
  child: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** What the server wrote to stderr so far (its JSON log). */
  stderr(): string;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

/** `bin/lifeboat server` as a child process, waited for until it answers. */
export async function startChildServer(
  dataDir: string,
  env: Record<string, string> = {},
  port?: number,
  extraArgs: string[] = [],
): Promise<ChildServer> {
  const chosen = port ?? (await freePort());
  const child = spawn(
    path.join(ROOT, "bin/lifeboat"),
    ["server", "--data", dataDir, "--listen", `127.0.0.1:${chosen}`, ...extraArgs],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const tls = extraArgs.includes("--tls-cert");
  const url = `${tls ? "https" : "http"}://127.0.0.1:${chosen}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited: ${stderr}`);
    // Up when the admin token exists and the port answers (TLS or not).
    if (existsSync(path.join(dataDir, "admin.token")) && (await portOpen(chosen))) break;
    if (Date.now() > deadline) throw new Error(`server did not start: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  const server = await withHosts(
    url,
    dataDir,
    () => kill("SIGTERM"),
    () => kill("SIGKILL"),
  );
  return { ...server, child, kill, stderr: () => stderr };
}

/** A committed snapshot with a random manifest and no chunks: enough for drill queueing. */
export async function emptySnapshot(client: ApiClient): Promise<string> {
  const { id } = await client.createSnapshot({ keyId: null, parent: null });
  const manifest = randomBytes(64);
  const hash = createHash("sha256").update(manifest).digest("hex");
  await client.putManifest(id, manifest, hash);
  await client.commit(id, {
    chunks: [],
    stats: { bytes: 0, newBytes: 0, files: 0, seconds: 0 },
    summary: { manifestId: hash },
  });
  return id;
}
