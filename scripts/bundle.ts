// Bundles the CLI into one ESM file (dist/lifeboat.mjs) that the pinned Node runs without
// node_modules: this is what goes into rescue images and fixture VMs.
import { build } from "esbuild";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");

export async function bundleCli(outfile = path.join(root, "dist", "lifeboat.mjs")) {
  await build({
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
  });
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
