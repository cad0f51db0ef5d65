// Bundles the CLI into one ESM file (dist/lifeboat.mjs) that the pinned Node runs without
// node_modules: this is what goes into rescue images and fixture VMs.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");

/**
 * The bundle with every character outside ASCII written as a \u escape. Node keeps a 5 MB
 * source for as long as it runs, and keeps it more cheaply when it is pure ASCII: external
 * memory 8.7 MB instead of 13.5 MB, and `lifeboat --help` peaks at 79.7 MiB instead of
 * 84.6 MiB (a Latin-1 source made no difference). esbuild escapes strings (charset ascii)
 * but keeps comments and regular expression literals as written, and a handful of them
 * (dashes, arrows, accents) were enough. An escape means the same character in a comment,
 * a string, a regular expression and an identifier.
 */
export function asciiSource(code: string): string {
  return code.replace(/(\\*)([^\u0000-\u007f])/gu, (_, backslashes: string, char: string) => {
    // `\→` (an identity escape in a string or regular expression) is the character itself;
    // its backslash must go, or it would escape the escape.
    let escaped = backslashes.length % 2 === 1 ? backslashes.slice(1) : backslashes;
    for (let i = 0; i < char.length; i++) {
      escaped += `\\u${char.charCodeAt(i).toString(16).padStart(4, "0")}`;
    }
    return escaped;
  });
}

export async function bundleCli(outfile = path.join(root, "dist", "lifeboat.mjs")) {
  const result = await build({
    entryPoints: [path.join(root, "agent", "cli", "bin.ts")],
    outfile,
    bundle: true,
    platform: "node",
    target: "node24",
    format: "esm",
    // systeminformation and other CommonJS dependencies call require().
    banner: {
      js: "import { createRequire as __lifeboatRequire } from 'node:module'; const require = __lifeboatRequire(import.meta.url);",
    },
    logLevel: "warning",
    write: false,
  });
  const [output] = result.outputFiles;
  if (!output || result.outputFiles.length !== 1) {
    throw new Error(`esbuild wrote ${result.outputFiles.length} files, expected one`);
  }
  mkdirSync(path.dirname(outfile), { recursive: true });
  writeFileSync(outfile, asciiSource(output.text));
  // The server's docs page serves swagger-ui's files from disk (server/app.ts looks here).
  const swaggerUi = path.join(path.dirname(outfile), "swagger-ui");
  rmSync(swaggerUi, { recursive: true, force: true });
  const pkg = createRequire(import.meta.url).resolve("@fastify/swagger-ui/package.json");
  cpSync(path.join(path.dirname(pkg), "static"), swaggerUi, { recursive: true });
  return outfile;
}

if (import.meta.main) {
  const out = await bundleCli(process.argv[2]);
  console.log(out);
}
