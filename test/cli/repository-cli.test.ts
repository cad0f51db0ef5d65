// The backup commands through the CLI, against a real server on loopback.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-cli-repo-"));
const tokenFile = () => path.join(server.dataDir, "admin.token");

beforeAll(async () => {
  server = await startServer();
  process.env.LIFEBOAT_STATE_DIR = path.join(work, "state");
  process.env.LIFEBOAT_CONFIG = path.join(work, "no-config.json");
  writeFileSync(process.env.LIFEBOAT_CONFIG, "{}");
});
afterAll(async () => {
  delete process.env.LIFEBOAT_STATE_DIR;
  delete process.env.LIFEBOAT_CONFIG;
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

describe("repository commands", () => {
  it("adds a host with the admin token file; the printed token backs up, lists and restores", async () => {
    const added = await cli(
      "host",
      "add",
      "cli-host",
      "--server",
      server.url,
      "--token-file",
      tokenFile(),
      "--json",
    );
    expect(added.code).toBe(0);
    const { token } = JSON.parse(added.stdout) as { token: string };
    expect(token).toMatch(/^lbh_[0-9a-f]{64}$/);

    const key = path.join(work, "repo.key");
    expect((await cli("key", "create", key)).code).toBe(0);
    expect(statSync(key).mode & 0o777).toBe(0o600);

    const src = path.join(work, "src");
    mkdirSync(src);
    writeFileSync(path.join(src, "a.txt"), "alpha\n");
    const conn = ["--server", server.url, "--token", token];
    const backup = await cli(
      "backup",
      ...conn,
      "--key-file",
      key,
      "--path",
      src,
      "--no-layout",
      "--json",
    );
    expect(backup.code, backup.stderr).toBe(0);
    const summary = JSON.parse(backup.stdout) as { id: string; host: string; files: number };
    expect(summary).toMatchObject({ host: "cli-host", files: 2 });

    const list = await cli("snapshots", ...conn, "--json");
    expect((JSON.parse(list.stdout) as { id: string }[]).map((s) => s.id)).toEqual([summary.id]);

    const target = path.join(work, "restore");
    mkdirSync(target);
    const restored = await cli(
      "restore",
      summary.id,
      ...conn,
      "--key-file",
      key,
      "--target",
      target,
      "--path",
      path.join(src, "a.txt"),
    );
    expect(restored.code, restored.stderr).toBe(0);
    expect(statSync(path.join(target, src, "a.txt")).size).toBe(6);

    // The same, straight from the server's data directory, with no server in between.
    const offline = await cli("snapshots", "--from", server.dataDir, "--json");
    expect(offline.code, offline.stderr).toBe(0);
    expect((JSON.parse(offline.stdout) as { id: string }[]).map((s) => s.id)).toEqual([summary.id]);
    const direct = path.join(work, "restore-direct");
    mkdirSync(direct);
    const fromDir = await cli(
      "restore",
      summary.id,
      "--from",
      server.dataDir,
      "--key-file",
      key,
      "--target",
      direct,
    );
    expect(fromDir.code, fromDir.stderr).toBe(0);
    expect(readFileSync(path.join(direct, src, "a.txt"), "utf8")).toBe("alpha\n");

    for (const bad of ["0", "17", "two"]) {
      const refused = await cli(
        "restore",
        summary.id,
        ...conn,
        "--target",
        target,
        "--extractors",
        bad,
      );
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`--extractors ${bad} is not a number from 1 to 16`);
    }

    const verify = await cli(
      "verify",
      "--server",
      server.url,
      "--token-file",
      tokenFile(),
      "--read-data",
      "--json",
    );
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout.trim().split("\n").at(-1)!)).toMatchObject({ ok: true });

    // A host token can't prune: an auth error, exit 3, with a hint.
    const prune = await cli("prune", ...conn, "--keep-last", "1");
    expect(prune.code).toBe(3);
    expect(prune.stderr).toContain("LB_AUTH_FORBIDDEN");
    expect(prune.stderr).toContain("hint:");
  });

  it("exits 2 for bad usage and 3 when the server can't be reached, naming the fix", async () => {
    const noServer = await cli("snapshots", "--token", "x");
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toContain("LIFEBOAT_SERVER");
    const badKeep = await cli(
      "prune",
      "--server",
      server.url,
      "--token-file",
      tokenFile(),
      "--keep-last",
      "many",
    );
    expect(badKeep.code).toBe(2);
    const noPolicy = await cli("prune", "--server", server.url, "--token-file", tokenFile());
    expect(noPolicy.code).toBe(2);
    expect(noPolicy.stderr).toContain("--keep");
    const unreachable = await cli("snapshots", "--server", "http://127.0.0.1:9", "--token", "x");
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toContain("LB_SERVER_UNREACHABLE");
  }, 20_000);
});
