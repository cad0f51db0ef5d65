// Loading recorded fixtures: layout documents captured from real tools on real (virtual)
// machines. See test/fixtures/*/README.md for how each was recorded.
import { readFileSync, existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { parseLayout } from "../../layouts/document.ts";
import type { Layout, RawCapture } from "../../layouts/schema.ts";

export const FIXTURES = path.resolve(import.meta.dirname, "..", "fixtures");

export function loadLayout(relative: string): Layout {
  const file = path.join(FIXTURES, relative);
  return parseLayout(JSON.parse(readFileSync(file, "utf8")), file);
}

/** The names of the VM fixtures that have been recorded (test/fixtures/vm/<name>.json). */
export function vmFixtures(): string[] {
  const dir = path.join(FIXTURES, "vm");
  if (!existsSync(dir)) return [];
  return (
    readdirSync(dir)
      // Scenario fixtures are named like "a-bios-gpt-ext4.json"; versions.json is not one.
      .filter((f) => /^[a-z]-.+\.json$/.test(f))
      .map((f) => f.replace(/\.json$/, ""))
      .sort()
  );
}

/** The recorded stdout of one tool run, found by its argv prefix. */
export function rawOutput(raw: RawCapture, ...argvPrefix: string[]): string {
  const command = raw.commands.find((c) => argvPrefix.every((arg, i) => c.argv[i] === arg));
  if (!command) throw new Error(`fixture has no recorded run of ${argvPrefix.join(" ")}`);
  return command.stdout;
}

export function rawOutputs(raw: RawCapture, ...argvPrefix: string[]) {
  return raw.commands.filter((c) => argvPrefix.every((arg, i) => c.argv[i] === arg));
}
