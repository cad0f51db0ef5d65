// Small readers for the line formats many tools share.

/** KEY=VALUE lines (blkid -o export, mdadm --export, os-release). Quotes are removed. */
export function parseExportLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z0-9_.:-]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    out[match[1]!] = unquote(match[2]!);
  }
  return out;
}

function unquote(value: string): string {
  if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0]!)) {
    return value.slice(1, -1).replace(/\\(["'\\$`])/g, "$1");
  }
  return value;
}

/** "Key:   value" lines (dumpe2fs -h, cryptsetup luksDump for LUKS1). */
export function parseColonLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const index = line.indexOf(":");
    if (index <= 0) continue;
    const key = line.slice(0, index).trim();
    if (key === "" || key in out) continue;
    out[key] = line.slice(index + 1).trim();
  }
  return out;
}

export function toInt(value: string | undefined | null): number | null {
  if (value === undefined || value === null || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? Math.trunc(n) : null;
}

export function emptyToNull(value: string | undefined | null): string | null {
  return value === undefined || value === null || value === "" ? null : value;
}
