// Byte sizes for people: "20.0 GiB", and the alignment arithmetic the planner uses.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(bytes: number): string {
  if (bytes < KiB) return `${bytes} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function alignDown(value: number, alignment: number): number {
  return Math.floor(value / alignment) * alignment;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/** "90s", "15m", "1h30m", "2d" or plain seconds, as seconds; null when it is none of these. */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
  let total = 0;
  let rest = trimmed;
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)([smhdw])/.exec(rest);
    if (!match) return null;
    total += Number(match[1]) * units[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return trimmed.length > 0 && total > 0 ? total : null;
}

/** "500M", "20G", "1.5T" or plain bytes (binary units), as bytes; null when it is none of these. */
export function parseSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B?)?$/i.exec(text.trim());
  if (!match) return null;
  const power = match[2] ? "KMGT".indexOf(match[2][0]!.toUpperCase()) + 1 : 0;
  return Math.floor(Number(match[1]) * 1024 ** power);
}
