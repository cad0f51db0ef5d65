import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.ts";
import { FIXTURES } from "../helpers/fixtures.ts";

const tmp = (name: string) => path.join(os.tmpdir(), `lifeboat-cli-${process.pid}-${name}`);

describe("lifeboat CLI", () => {
  it("lists its commands and the exit codes", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    for (const c of ["layout capture", "layout check", "layout plan", "layout apply"])
      expect(r.stdout).toContain(c);
    expect(r.stdout).toContain(
      "Exit codes: 0 ok, 1 a check failed, 2 usage or input error, 3 environment error.",
    );
  });

  it("shows help for every command", async () => {
    const r = await cli("layout", "plan", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: lifeboat layout plan [options]");
    expect(r.stdout).toContain("--map OLD=NEW");
    expect(r.stdout).toContain("(repeatable)");
  });

  it("exits 2 for an unknown command or option, with a hint", async () => {
    const unknown = await cli("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("LB_USAGE_UNKNOWN_COMMAND");
    expect(unknown.stderr).toContain("hint: Run 'lifeboat --help'");
    const option = await cli("layout", "plan", "--bogus");
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("--bogus");
  });

  it("exits 2 when a required option is missing", async () => {
    const r = await cli("layout", "plan");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--layout is required");
  });

  it("exits 2 for malformed JSON, naming the problem, and prints no stack trace", async () => {
    const file = tmp("bad.json");
    await writeFile(file, "{ not json");
    const r = await cli("layout", "plan", "--layout", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is not valid JSON");
    expect(r.stderr).not.toContain("    at ");
  });

  it("exits 2 for a wrong-version layout and names the field; --debug adds the stack", async () => {
    const doc = JSON.parse(
      await import("node:fs/promises").then((fs) =>
        fs.readFile(path.join(FIXTURES, "host/gpt-mixed.json"), "utf8"),
      ),
    );
    doc.version = 99;
    const file = tmp("v99.json");
    await writeFile(file, JSON.stringify(doc));
    const r = await cli("layout", "check", "--against", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("LB_LAYOUT_VERSION");
    expect(r.stderr).toContain("layout version 99");
    const debug = await cli("layout", "check", "--against", file, "--debug");
    expect(debug.stderr).toContain("    at ");
  });

  it("prints errors as JSON on stdout with --json", async () => {
    const r = await cli("layout", "check", "--against", tmp("missing.json"), "--json");
    expect(r.code).toBe(2);
    const out = JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string } };
    expect(out.error.code).toBe("LB_LAYOUT_UNREADABLE");
    expect(out.error.message).toContain("no such file");
    expect(out.error.hint).toContain("--against");
  });

  it("rejects a malformed --map", async () => {
    const r = await cli(
      "layout",
      "plan",
      "--layout",
      path.join(FIXTURES, "host/gpt-mixed.json"),
      "--map",
      "vda:vdb",
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("expected OLD=NEW");
  });
});
