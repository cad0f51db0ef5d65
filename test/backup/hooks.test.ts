// Backup hooks: order, environment, what a failing pre- or post-hook does, timeouts that
// reach the hook's children, and hooks that leave something running in the background.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { environmentError, LifeboatError } from "../../common/errors.ts";
import { runHooks, withHooks } from "../../agent/backup/hooks.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-hooks-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const log = path.join(work, "log");
const logged = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
beforeEach(() => rmSync(log, { force: true }));

describe("withHooks", () => {
  it("runs pre-hooks, the backup, then post-hooks, and records each for the manifest", async () => {
    let preHooksSeen: unknown = null;
    const records = await withHooks(
      {
        pre: [`echo "pre $LIFEBOAT_PHASE $LIFEBOAT_HOST" >> ${log}`, `echo pre2 >> ${log}`],
        post: [`echo "post $LIFEBOAT_PHASE $LIFEBOAT_BACKUP_STATUS" >> ${log}`],
      },
      async (preHooks) => {
        preHooksSeen = preHooks;
        expect(logged()).toBe("pre pre web1\npre2\n");
      },
      { env: { LIFEBOAT_HOST: "web1" } },
    );
    expect(logged()).toBe("pre pre web1\npre2\npost post ok\n");
    expect(records.map((r) => [r.phase, r.exitCode])).toEqual([
      ["pre", 0],
      ["pre", 0],
      ["post", 0],
    ]);
    // Exactly the manifest's fields, nothing else.
    expect(Object.keys(records[0]!).sort()).toEqual(["command", "exitCode", "phase", "seconds"]);
    expect(preHooksSeen).toEqual(records.slice(0, 2));
  });

  it("stops at a failing pre-hook, naming it, its exit status and stderr; post-hooks still run", async () => {
    let ran = false;
    const error = await withHooks(
      {
        pre: [
          "echo dumping; echo 'pg_dump: connection refused' >&2; exit 7",
          `echo never >> ${log}`,
        ],
        post: [`echo "post $LIFEBOAT_BACKUP_STATUS" >> ${log}`],
      },
      async () => {
        ran = true;
      },
    ).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(error).toBeInstanceOf(LifeboatError);
    expect(error).toMatchObject({ code: "LB_BACKUP_PRE_HOOK_FAILED", kind: "environment" });
    const message = (error as Error).message;
    expect(message).toContain("exit 7");
    expect(message).toContain("echo dumping; echo 'pg_dump: connection refused' >&2; exit 7");
    expect(message).toContain("pg_dump: connection refused");
    expect(logged()).toBe("post pre-hook-failed\n");
  });

  it("runs post-hooks after a failed backup and passes the failure on", async () => {
    await expect(
      withHooks({ pre: [], post: [`echo "post $LIFEBOAT_BACKUP_STATUS" >> ${log}`] }, async () => {
        throw new Error("upload failed");
      }),
    ).rejects.toThrow("upload failed");
    expect(logged()).toBe("post failed\n");
  });

  it("adds a failing post-hook to the backup's own error", async () => {
    const error = await withHooks({ pre: [], post: ["echo cannot thaw >&2; exit 4"] }, async () => {
      throw environmentError("LB_TEST", "the server went away", "retry");
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "LB_TEST", hint: "retry" });
    expect((error as Error).message).toMatch(/the server went away\nPost-backup hooks failed/);
    expect((error as Error).message).toContain("cannot thaw");
  });

  it("reports a failing post-hook in its record without failing a committed backup", async () => {
    const records = await withHooks(
      { pre: [], post: ["exit 3", `echo after >> ${log}`] },
      async () => {},
    );
    expect(records.map((r) => r.exitCode)).toEqual([3, 0]);
    expect(logged()).toBe("after\n");
  });
});

describe("runHooks", () => {
  it("keeps the tail of large output only", async () => {
    const [run] = await runHooks("pre", [
      "head -c 10000000 /dev/zero | tr '\\0' x; echo; echo END",
    ]);
    expect(run!.exitCode).toBe(0);
    expect(run!.stdoutTail.length).toBeLessThanOrEqual(4096);
    expect(run!.stdoutTail.endsWith("END")).toBe(true);
  });

  it("kills a hook and its children at the timeout", async () => {
    const pidFile = path.join(work, "child.pid");
    const started = performance.now();
    const [run] = await runHooks("pre", [`sleep 30 & echo $! > ${pidFile}; wait`], {
      timeoutMs: 300,
    });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(run).toMatchObject({ exitCode: null, ended: "killed after the 0.3 s timeout" });
    const pid = Number(readFileSync(pidFile, "utf8"));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Gone, or a zombie waiting for whichever process adopted it: not running either way.
    const state = existsSync(`/proc/${pid}`)
      ? /State:\s+(\w)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]
      : "gone";
    expect(["gone", "Z"]).toContain(state);
  });

  it("returns when the hook exits, even if something it started keeps its output open", async () => {
    const started = performance.now();
    const [run] = await runHooks("post", ["sleep 3 & echo started"]);
    expect(run).toMatchObject({ exitCode: 0, stdoutTail: "started" });
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it("records a hook killed by a signal", async () => {
    const [run] = await runHooks("post", ["kill -SEGV $$"]);
    expect(run).toMatchObject({ exitCode: null, ended: "killed by SIGSEGV" });
  });
});
