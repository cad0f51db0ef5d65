// lifeboat layout import-rear FILE [--out FILE] [--json] [--strict]
import { readFile } from "node:fs/promises";
import { checkFailed, environmentError, inputError } from "../../../common/errors.ts";
import { writeFileAtomic } from "../../../common/fs.ts";
import { serializeLayout } from "../../../layouts/document.ts";
import { importRearLayout, type UnmappedLine } from "../../../layouts/rear.ts";
import type { Command, CommandContext } from "../command.ts";

export const layoutImportRearCommand: Command = {
  path: ["layout", "import-rear"],
  summary: "Convert a ReaR disklayout.conf into a layout document",
  description:
    "Reads the disk layout ReaR (Relax-and-Recover) saved, usually\n" +
    "/var/lib/rear/layout/disklayout.conf, and writes a validated layout document.\n" +
    "Every line that could not be mapped is listed on standard error as FILE:LINE: reason: text.\n" +
    "The layout is written even then; --strict makes such lines fail the command.",
  options: {
    out: { type: "string", value: "FILE", description: "Write the document here (atomically)" },
    json: {
      type: "boolean",
      description:
        'Print {"unmapped": [...]} on standard output; without --out, {"layout": ..., "unmapped": [...]}',
    },
    strict: {
      type: "boolean",
      description: "Exit 1 when any line could not be mapped (the layout is still written)",
    },
  },
  positionals: [{ name: "FILE", required: true }],
  examples: [
    "lifeboat layout import-rear /var/lib/rear/layout/disklayout.conf --out layout.json",
    "lifeboat layout import-rear disklayout.conf --strict > layout.json",
  ],
  async run(ctx) {
    const file = ctx.positionals[0] ?? "";
    const { layout, unmapped } = importRearLayout(await readRearFile(file), {
      source: file,
      now: new Date(),
    });
    const out = ctx.string("out");
    if (out) await writeLayout(out, serializeLayout(layout));
    if (ctx.json) {
      ctx.stdout.write(`${JSON.stringify(out ? { unmapped } : { layout, unmapped })}\n`);
    } else {
      if (!out) ctx.stdout.write(serializeLayout(layout));
      reportUnmapped(ctx, file, unmapped);
    }
    if (unmapped.length > 0 && ctx.flag("strict")) {
      throw checkFailed(
        "LB_REAR_UNMAPPED",
        `${countLines(unmapped)} of ${file} could not be mapped completely into the layout.`,
        "Review the listed lines; without --strict the layout is accepted as written.",
      );
    }
  },
};

function reportUnmapped(ctx: CommandContext, file: string, unmapped: UnmappedLine[]): void {
  for (const entry of unmapped) {
    ctx.stderr.write(`${file}:${entry.line}: ${entry.reason}: ${entry.text.trim()}\n`);
  }
  if (unmapped.length > 0 && !ctx.flag("strict")) {
    ctx.stderr.write(
      `lifeboat: warning: ${countLines(unmapped)} of ${file} could not be mapped completely (listed above).\n`,
    );
  }
}

/** "3 lines": one line can have several entries. */
function countLines(unmapped: UnmappedLine[]): string {
  const lines = new Set(unmapped.map((entry) => entry.line)).size;
  return `${lines} ${lines === 1 ? "line" : "lines"}`;
}

async function readRearFile(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? "it is a directory"
          : code === "EACCES"
            ? "permission denied"
            : String(code ?? error);
    throw inputError(
      "LB_REAR_UNREADABLE",
      `Can't read ReaR layout file ${file}: ${why}.`,
      "Pass the disklayout.conf ReaR wrote, usually /var/lib/rear/layout/disklayout.conf ('rear savelayout' creates it).",
    );
  }
}

async function writeLayout(file: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(file, text);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw environmentError(
      "LB_OUTPUT_UNWRITABLE",
      `Can't write ${file}: ${code === "ENOENT" ? "its directory does not exist" : String(code ?? error)}.`,
      "Choose a writable path with --out.",
      error,
    );
  }
}
