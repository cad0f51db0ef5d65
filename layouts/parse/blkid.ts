// blkid -p -o export DEV: low-level probing of one device's signatures. With no udev on the
// machine, this is the source of truth for filesystem types, UUIDs and labels.
import { parseExportLines } from "./kv.ts";

export interface BlkidProbe {
  device: string;
  type: string | null;
  uuid: string | null;
  uuidSub: string | null;
  label: string | null;
  version: string | null;
  usage: string | null;
  /** Partition-table type and id when the device carries a table. */
  ptType: string | null;
  ptUuid: string | null;
  /** All keys as printed. */
  fields: Record<string, string>;
  /** Set when blkid could not read the device and the facts came from elsewhere. */
  unreadable?: boolean;
}

/** Parses the output for one device (blkid exits 2 and prints nothing when it finds nothing). */
export function parseBlkidExport(device: string, text: string): BlkidProbe {
  const fields = parseExportLines(text);
  const get = (key: string) => fields[key] ?? null;
  return {
    device: fields.DEVNAME ?? device,
    type: get("TYPE"),
    uuid: get("UUID"),
    uuidSub: get("UUID_SUB"),
    label: get("LABEL"),
    version: get("VERSION"),
    usage: get("USAGE"),
    ptType: get("PTTYPE"),
    ptUuid: get("PTUUID"),
    fields,
  };
}
