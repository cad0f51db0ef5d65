// The server as the bundled CLI runs it (dist/lifeboat.mjs, no node_modules around it): it
// starts, serves the API document, and its docs page finds swagger-ui's files next to the
// bundle. It used to fail at start with "__dirname is not defined".
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import vm from "node:vm";
import { afterAll, describe, expect, it } from "vitest";
import { bundleCli, asciiSource } from "../../scripts/bundle.ts";

const work = mkdtempSync(path.join(tmpdir(), "lifeboat-bundle-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the bundled CLI", () => {
  it("runs the server with its docs page", async () => {
    const bundle = await bundleCli(path.join(work, "dist", "lifeboat.mjs"));
    // Pure ASCII, which Node holds more cheaply (asciiSource says why).
    expect(readFileSync(bundle, "utf8")).not.toMatch(/[^\u0000-\u007f]/u);
    const server = execa(
      process.execPath,
      [bundle, "server", "--data", path.join(work, "data"), "--listen", "127.0.0.1:0"],
      { reject: false, cwd: work, all: true },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error(`no URL in 20 s: ${out}`)), 20_000);
        // Its log (stdout or stderr) names the URL it listens on.
        server.all?.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const match = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
          if (match?.[1]) {
            clearTimeout(timer);
            resolve(match[1]);
          }
        });
        void server.then((result) => reject(new Error(`server exited: ${result.all ?? out}`)));
      });
      const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: object };
      expect(Object.keys(doc.paths)).toContain("/v1/snapshots");
      const page = await fetch(`${url}/docs`, { redirect: "follow" });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("swagger-ui");
      expect((await fetch(`${url}/docs/static/swagger-ui-bundle.js`)).status).toBe(200);
    } finally {
      server.kill("SIGTERM");
      await server;
    }
  }, 60_000);
});

describe("asciiSource", () => {
  it("escapes every character outside ASCII and leaves what the code does alone", () => {
    const code = String.raw`// a dash — and an arrow → in a comment
const s = "é→" + ${"`"}x—${"${1}"}${"`"} + "\→";
const r = [/[→—]+/u.test("→—"), /\→/.test("→"), /😀/.test("😀"), /^[😀]$/u.test("😀")];
result = [s, r, "café".length];`;
    const run = (source: string) => {
      const context: { result?: unknown } = {};
      vm.runInNewContext(source, context);
      return context.result;
    };
    const out = asciiSource(code);
    expect(out).not.toMatch(/[^\u0000-\u007f]/u);
    expect(out).toContain(String.raw`"caf\u00e9"`);
    expect(run(code)).toEqual(["é→x—1→", [true, true, true, true], 4]);
    expect(run(out)).toEqual(run(code));
  });
});
