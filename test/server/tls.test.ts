// The server over TLS with a self-signed certificate: trusted with --ca, refused without.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.ts";
import { freePort, startChildServer, type ChildServer } from "../helpers/server.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-tls-"));
const cert = path.join(work, "cert.pem");
const key = path.join(work, "key.pem");
let server: ChildServer;
let url: string;

beforeAll(async () => {
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  const port = await freePort();
  server = await startChildServer(path.join(work, "data"), {}, port, [
    "--tls-cert",
    cert,
    "--tls-key",
    key,
  ]);
  url = `https://127.0.0.1:${port}`;
}, 30_000);

afterAll(async () => {
  await server?.kill();
  rmSync(work, { recursive: true, force: true });
});

describe("TLS", () => {
  it("serves https; a client that trusts the certificate works", async () => {
    const tokenFile = path.join(server.dataDir, "admin.token");
    const added = await cli(
      "host",
      "add",
      "tls-host",
      "--server",
      url,
      "--token-file",
      tokenFile,
      "--ca",
      cert,
      "--json",
    );
    expect(added.code, added.stderr).toBe(0);
    const { token } = JSON.parse(added.stdout) as { token: string };
    const list = await cli("snapshots", "--server", url, "--token", token, "--ca", cert, "--json");
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it("refuses an untrusted certificate with a hint naming --ca", async () => {
    const r = await cli("snapshots", "--server", url, "--token", "lbh_x");
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("LB_SERVER_TLS");
    expect(r.stderr).toContain("--ca");
  });
});
