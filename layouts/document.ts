// Reading and writing layout documents. Every layout that crosses a boundary (a file, the
// network) goes through parseLayout, so a bad document is rejected with the field named.

import { readFile } from "node:fs/promises";
import type { z } from "zod";
import { inputError } from "../common/errors.ts";
import { LAYOUT_KIND, LAYOUT_VERSION, LayoutSchema, type Layout } from "./schema.ts";

/** Validate a parsed JSON value as a layout document; `source` names it in errors. */
export function parseLayout(value: unknown, source: string): Layout {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw inputError(
      "LB_LAYOUT_INVALID",
      `${source} is not a layout document: expected a JSON object.`,
      "Pass a file written by 'lifeboat layout capture'.",
    );
  }
  const header = value as { kind?: unknown; version?: unknown };
  if (header.kind !== LAYOUT_KIND) {
    throw inputError(
      "LB_LAYOUT_INVALID",
      `${source} is not a layout document: field "kind" is ${JSON.stringify(header.kind)}, expected "${LAYOUT_KIND}".`,
      "Pass a file written by 'lifeboat layout capture'.",
    );
  }
  if (header.version !== LAYOUT_VERSION) {
    const newer = typeof header.version === "number" && header.version > LAYOUT_VERSION;
    throw inputError(
      "LB_LAYOUT_VERSION",
      `${source} has layout version ${JSON.stringify(header.version)}; this Lifeboat reads version ${LAYOUT_VERSION}.`,
      newer
        ? "Upgrade Lifeboat to read it."
        : "Capture the layout again with this version of Lifeboat.",
    );
  }
  const result = LayoutSchema.safeParse(value);
  if (!result.success) {
    throw inputError(
      "LB_LAYOUT_INVALID",
      `${source} is not a valid layout document: ${describeIssues(result.error)}`,
      "Fix the named field, or capture the layout again with 'lifeboat layout capture'.",
    );
  }
  return result.data;
}

/** "field disks[0].sizeBytes: expected number, received string" for the first few issues. */
export function describeIssues(error: z.ZodError, limit = 3): string {
  const parts = error.issues.slice(0, limit).map((issue) => {
    const field = formatPath(issue.path);
    return field === "" ? issue.message : `field ${field}: ${issue.message}`;
  });
  const more = error.issues.length > limit ? ` (and ${error.issues.length - limit} more)` : "";
  return parts.join("; ") + more;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

export async function readLayoutFile(file: string): Promise<Layout> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw inputError(
      "LB_LAYOUT_UNREADABLE",
      `Can't read layout file ${file}: ${code === "ENOENT" ? "no such file" : String(code ?? error)}.`,
      "Check the path given with --layout or --against.",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw inputError(
      "LB_LAYOUT_INVALID",
      `${file} is not valid JSON: ${(error as Error).message}.`,
      "Pass a file written by 'lifeboat layout capture'.",
    );
  }
  return parseLayout(json, file);
}

export function serializeLayout(layout: Layout): string {
  return `${JSON.stringify(layout, null, 2)}\n`;
}
