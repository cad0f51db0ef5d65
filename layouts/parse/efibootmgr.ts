// efibootmgr -v: the firmware's boot entries and boot order.
import type { EfiBootEntry } from "../schema.ts";

export interface EfiBootState {
  bootCurrent: string | null;
  bootOrder: string[];
  entries: EfiBootEntry[];
}

export function parseEfibootmgr(text: string): EfiBootState {
  const state: EfiBootState = { bootCurrent: null, bootOrder: [], entries: [] };
  for (const line of text.split("\n")) {
    const current = /^BootCurrent:\s*([0-9A-Fa-f]{4})/.exec(line);
    if (current) state.bootCurrent = current[1]!.toUpperCase();
    const order = /^BootOrder:\s*(.*)$/.exec(line);
    if (order) {
      state.bootOrder = order[1]!
        .split(",")
        .map((n) => n.trim().toUpperCase())
        .filter(Boolean);
    }
    const entry = /^Boot([0-9A-Fa-f]{4})(\*?)\s(.*)$/.exec(line);
    if (entry) state.entries.push(toEntry(entry[1]!, entry[2] === "*", entry[3]!));
  }
  return state;
}

function toEntry(number: string, active: boolean, rest: string): EfiBootEntry {
  // The label and the device path are separated by a tab.
  const tab = rest.indexOf("\t");
  const label = (tab >= 0 ? rest.slice(0, tab) : rest).trim();
  const devicePath = tab >= 0 ? rest.slice(tab + 1).trim() : "";
  const hd = /HD\(\d+,GPT,([0-9a-fA-F-]{36})/.exec(devicePath);
  // "File(...)" is the loader; "FvFile(...)" is firmware-internal and is not.
  const file = /(?:^|\/)File\(([^)]*)\)/.exec(devicePath);
  return {
    number: number.toUpperCase(),
    label,
    active,
    devicePath,
    partUuid: hd ? hd[1]!.toUpperCase() : null,
    loader: file ? file[1]! : null,
  };
}
