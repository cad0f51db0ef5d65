// Recovery reports: a rescue system files its outcome and log; hosts see only their own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecoveryReport } from "../../common/api.ts";
import { startServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server.close();
});

const report = (extra: Partial<RecoveryReport> = {}): RecoveryReport => ({
  snapshot: null,
  ok: true,
  seconds: 12.5,
  steps: [{ name: "layout", seconds: 3 }],
  error: null,
  log: "LIFEBOAT-STEP layout start 1\nLIFEBOAT-STEP layout done 2\n",
  ...extra,
});

describe("recovery reports", () => {
  it("files a host's report under its own name and shows it only to that host and the admin", async () => {
    const a = await server.host("rec-a");
    const b = await server.host("rec-b");
    const { id } = await a.client.reportRecovery(report());
    await b.client.reportRecovery(
      report({ ok: false, error: { code: "LB_X", message: "disk gone" } }),
    );
    const own = await a.client.listRecoveries();
    expect(own.map((r) => [r.id, r.host, r.ok])).toEqual([[id, "rec-a", true]]);
    expect(await a.client.recoveryLog(id)).toContain("LIFEBOAT-STEP layout done 2");
    await expect(b.client.recoveryLog(id)).rejects.toThrow(/No recovery/);
    await expect(a.client.listRecoveries("rec-b")).rejects.toThrow(/can't see host rec-b/);
    await expect(a.client.reportRecovery(report({ host: "rec-b" }))).rejects.toThrow(
      /can't see host rec-b/,
    );
    const all = await server.admin.listRecoveries();
    expect(all.map((r) => r.host).sort()).toEqual(["rec-a", "rec-b"]);
    expect(all.find((r) => r.host === "rec-b")!.error).toEqual({
      code: "LB_X",
      message: "disk gone",
    });
  });

  it("needs a host name from the admin, and refuses an oversized log", async () => {
    await expect(server.admin.reportRecovery(report())).rejects.toThrow(/none was named/);
    const a = await server.host("rec-c");
    await expect(
      a.client.reportRecovery(report({ log: "x".repeat(4 * 1024 * 1024 + 1) })),
    ).rejects.toThrow();
  });
});
