// The admin commands through the CLI against a real server on loopback: host add and list,
// snapshots, verify (clean and damaged), prune and forget, and their refusals.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiClient } from "../../agent/client/api.ts";
import { cli } from "../helpers/cli.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const work = mkdtempSync(path.join(tmpdir(), "lifeboat-cli-admin-"));
let server: TestServer;
let admin: string[];

beforeAll(async () => {
  server = await startServer();
  admin = ["--server", server.url, "--token-file", path.join(server.dataDir, "admin.token")];
  // No agent config from this machine leaks in.
  process.env.LIFEBOAT_CONFIG = path.join(work, "agent.json");
  writeFileSync(process.env.LIFEBOAT_CONFIG, "{}");
});
afterAll(async () => {
  delete process.env.LIFEBOAT_CONFIG;
  await server.close();
  rmSync(work, { recursive: true, force: true });
});

async function snapshotOf(client: ApiClient) {
  const data = randomBytes(2000);
  const { id } = await client.createSnapshot({ keyId: null, parent: null });
  await client.putChunk(id, sha(data), data, sha(data));
  await client.putManifest(id, data, sha(data));
  await client.commit(id, {
    chunks: [sha(data)],
    stats: { bytes: 2000, newBytes: 2000, files: 3, seconds: 1 },
  });
  return { id, chunk: sha(data) };
}

describe("admin commands", () => {
  it("host add prints a token that works, once; --json gives {name, token}", async () => {
    const added = await cli("host", "add", "web1", ...admin);
    expect(added.code, added.stderr).toBe(0);
    const token = added.stdout.trim();
    expect(token).toMatch(/^lbh_[0-9a-f]{64}$/);
    expect(added.stderr).toContain("shown only once");
    expect(await new ApiClient(server.url, token).whoami()).toEqual({
      role: "host",
      host: "web1",
    });
    const json = await cli("host", "add", "web2", ...admin, "--json");
    expect(Object.keys(JSON.parse(json.stdout) as object).sort()).toEqual(["name", "token"]);
    const again = await cli("host", "add", "web1", ...admin);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("LB_SERVER_HOST_EXISTS");
    expect(again.stderr).toContain("hint:");
    const badName = await cli("host", "add", "Web_1!", ...admin);
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain("host name");
  });

  it("lists hosts and snapshots, as text and JSON", async () => {
    const { client } = await server.host("lister");
    const { id } = await snapshotOf(client);
    const hosts = await cli("host", "list", ...admin, "--json");
    expect(JSON.parse(hosts.stdout)).toContainEqual(
      expect.objectContaining({ name: "lister", snapshots: 1 }),
    );
    const text = await cli("snapshots", ...admin, "--host", "lister");
    expect(text.stdout).toContain(id);
    expect(text.stdout).toContain("lister");
    const json = await cli("snapshots", ...admin, "--host", "lister", "--json");
    expect((JSON.parse(json.stdout) as { id: string }[]).map((s) => s.id)).toEqual([id]);
  });

  it("verify exits 1 on damage, naming the chunk and the snapshots it breaks", async () => {
    const { client } = await server.host("damaged");
    const { id, chunk } = await snapshotOf(client);
    const file = path.join(server.dataDir, "chunks", chunk.slice(0, 2), chunk);
    const original = readFileSync(file);
    const flipped = Buffer.from(original);
    flipped[10] = flipped[10]! ^ 1;
    writeFileSync(file, flipped);
    try {
      const text = await cli("verify", ...admin, "--read-data");
      expect(text.code).toBe(1);
      expect(text.stdout).toContain(`damaged chunk ${chunk}: breaks ${id}`);
      expect(text.stderr).toContain("LB_VERIFY_DAMAGE");
      // Progress goes to stderr as JSON lines when it is not a terminal.
      expect(text.stderr).toMatch(/"type":"progress"/);
      const json = await cli("verify", ...admin, "--read-data", "--json");
      expect(json.code).toBe(1);
      const result = JSON.parse(json.stdout.split("\n")[0]!) as { corrupt: unknown[] };
      expect(result.corrupt).toEqual([{ id: chunk, snapshots: [id] }]);
      // Without --read-data the sizes still match, so nothing is found.
      expect((await cli("verify", ...admin)).code).toBe(0);
    } finally {
      writeFileSync(file, original);
    }
    expect((await cli("verify", ...admin, "--read-data")).code).toBe(0);
  });

  it("prunes with a dry run first, and forgets one snapshot", async () => {
    const { client } = await server.host("pruned");
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await snapshotOf(client)).id);
    const dry = await cli(
      "prune",
      ...admin,
      "--host",
      "pruned",
      "--keep-last",
      "2",
      "--dry-run",
      "--json",
    );
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toEqual({
      hosts: [{ host: "pruned", keep: [ids[2], ids[1]], forget: [ids[0]] }],
      gc: null,
    });
    expect(await client.listSnapshots()).toHaveLength(3);
    const real = await cli("prune", ...admin, "--host", "pruned", "--keep-last", "2");
    expect(real.stdout).toContain(`forgot ${ids[0]}`);
    expect(real.stdout).toMatch(/collected \d+ chunks/);
    const forgot = await cli("forget", ids[1]!, ...admin);
    expect(forgot.code).toBe(0);
    expect((await client.listSnapshots()).map((s) => s.id)).toEqual([ids[2]]);
  });

  it("refuses with exit 2 for usage and 3 for the environment, each with a hint", async () => {
    // No keep rule: refused before the server is asked (this one is not even running).
    const noRule = await cli("prune", "--server", "http://127.0.0.1:9", "--token", "x");
    expect(noRule.code).toBe(2);
    expect(noRule.stderr).toContain("LB_PRUNE_NO_POLICY");
    const noToken = await cli("host", "list", "--server", server.url);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/hint: .*--token-file/);
    const missingFile = await cli(
      "host",
      "list",
      "--server",
      server.url,
      "--token-file",
      path.join(work, "nope"),
    );
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toContain("LB_TOKEN_FILE");
    const wrongToken = await cli("host", "list", "--server", server.url, "--token", "lba_wrong");
    expect(wrongToken.code).toBe(3);
    expect(wrongToken.stderr).toContain("LB_AUTH_REQUIRED");
    expect(wrongToken.stderr).toContain("hint:");
    const { token } = await server.host("not-admin");
    const hostToken = await cli("host", "add", "x", "--server", server.url, "--token", token);
    expect(hostToken.code).toBe(3);
    expect(hostToken.stderr).toContain("LB_AUTH_FORBIDDEN");
    const json = await cli("forget", "0".repeat(28), ...admin, "--json");
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: "LB_SERVER_NO_SUCH_SNAPSHOT" },
    });
  });

  it("lifeboat server refuses a bad --listen before it creates the data directory", async () => {
    const data = path.join(work, "never-made");
    const bad = await cli("server", "--data", data, "--listen", "localhost");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("LB_USAGE_LISTEN");
    expect(existsSync(data)).toBe(false);
  });
});
