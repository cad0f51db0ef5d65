// The agent config file and where a command's server and token come from: flags, then the
// environment, then the config file.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadAgentConfig, resolveConnection } from "../../agent/config.ts";
import { EXIT, exitCodeFor, LifeboatError } from "../../common/errors.ts";

const dir = mkdtempSync(path.join(tmpdir(), "lifeboat-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const target = path.join(dir, name);
  writeFileSync(target, text);
  return target;
}

const config = file(
  "agent.json",
  JSON.stringify({ server: "http://config.invalid:1", token: "from-config", excludes: ["/tmp"] }),
);
const none = path.join(dir, "absent.json");

async function refusal(promise: Promise<unknown>): Promise<LifeboatError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LifeboatError);
  return error as LifeboatError;
}

describe("resolveConnection", () => {
  it("takes flags over the environment over the config file", async () => {
    const env = { LIFEBOAT_SERVER: "http://env.invalid:2", LIFEBOAT_TOKEN: "from-env" };
    expect(await resolveConnection({ flags: {}, env: {}, configPath: config })).toMatchObject({
      server: "http://config.invalid:1",
      token: "from-config",
    });
    expect(await resolveConnection({ flags: {}, env, configPath: config })).toMatchObject({
      server: "http://env.invalid:2",
      token: "from-env",
    });
    expect(
      await resolveConnection({
        flags: { server: "https://flag.invalid:3", token: "from-flag" },
        env,
        configPath: config,
      }),
    ).toEqual({ server: "https://flag.invalid:3", token: "from-flag", ca: null });
  });

  it("reads the config that LIFEBOAT_CONFIG names, and token files", async () => {
    const tokenFile = file("host.token", "lbh_secret\n");
    const other = file("other.json", JSON.stringify({ server: "http://o.invalid:4", tokenFile }));
    expect(await resolveConnection({ flags: {}, env: { LIFEBOAT_CONFIG: other } })).toMatchObject({
      server: "http://o.invalid:4",
      token: "lbh_secret",
    });
    // A --token-file flag beats LIFEBOAT_TOKEN.
    expect(
      await resolveConnection({
        flags: { tokenFile },
        env: { LIFEBOAT_TOKEN: "env" },
        configPath: config,
      }),
    ).toMatchObject({ token: "lbh_secret" });
  });

  it("names all three ways when no server or token is configured (exit 2)", async () => {
    const noServer = await refusal(resolveConnection({ flags: {}, env: {}, config: null }));
    expect(noServer.code).toBe("LB_NO_SERVER");
    expect(noServer.hint).toMatch(/--server.*LIFEBOAT_SERVER.*agent\.json/);
    expect(exitCodeFor(noServer)).toBe(EXIT.usage);
    const noToken = await refusal(
      resolveConnection({ flags: { server: "http://127.0.0.1:1" }, env: {}, config: null }),
    );
    expect(noToken.code).toBe("LB_NO_TOKEN");
    expect(noToken.hint).toMatch(/--token.*LIFEBOAT_TOKEN.*agent\.json/);
  });

  it("refuses a server that is not an http(s) URL, and unreadable or empty token files", async () => {
    const url = await refusal(
      resolveConnection({ flags: { server: "127.0.0.1:8450", token: "t" }, env: {} }),
    );
    expect(url.code).toBe("LB_BAD_SERVER_URL");
    const missing = await refusal(
      resolveConnection({
        flags: { server: "http://a.invalid", tokenFile: none },
        env: {},
        config: null,
      }),
    );
    expect(missing).toMatchObject({ code: "LB_TOKEN_FILE" });
    expect(missing.message).toContain(none);
    const empty = await refusal(
      resolveConnection({
        flags: { server: "http://a.invalid", tokenFile: file("empty.token", "\n") },
        env: {},
        config: null,
      }),
    );
    expect(empty.message).toMatch(/empty/);
  });
});

describe("agent config file", () => {
  it("fills defaults", async () => {
    expect(await loadAgentConfig(config, {})).toMatchObject({
      excludes: ["/tmp"],
      hooks: { pre: [], post: [] },
      fullEvery: 7,
    });
  });

  it("is optional at the default path but not when named", async () => {
    const error = await refusal(loadAgentConfig(undefined, { LIFEBOAT_CONFIG: none }));
    expect(error.code).toBe("LB_CONFIG_UNREADABLE");
    expect(error.hint).toMatch(/LIFEBOAT_CONFIG/);
  });

  it("names the bad field, and refuses unknown ones and broken JSON", async () => {
    const bad = await refusal(
      loadAgentConfig(file("bad.json", JSON.stringify({ fullEvery: 0 })), {}),
    );
    expect(bad).toMatchObject({ code: "LB_CONFIG_INVALID" });
    expect(bad.message).toContain("fullEvery");
    const unknown = await refusal(
      loadAgentConfig(file("unknown.json", JSON.stringify({ sever: "typo" })), {}),
    );
    expect(unknown.message).toContain("sever");
    const broken = await refusal(loadAgentConfig(file("broken.json", "{"), {}));
    expect(broken.message).toMatch(/not valid JSON/);
  });
});
