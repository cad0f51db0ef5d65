// Small system files and tool outputs: os-release, /proc/swaps, ip -j addr.
import { z } from "zod";
import type { Host } from "../schema.ts";
import { parseExportLines } from "./kv.ts";

export function parseOsRelease(text: string): Host["os"] {
  const fields = parseExportLines(text);
  if (!fields.ID) return null;
  return {
    id: fields.ID,
    versionId: fields.VERSION_ID ?? "",
    prettyName: fields.PRETTY_NAME ?? fields.NAME ?? fields.ID,
  };
}

export interface ProcSwap {
  path: string;
  type: "partition" | "file";
  sizeBytes: number;
  priority: number;
}

/** /proc/swaps: sizes are KiB; paths escape spaces as \040. */
export function parseProcSwaps(text: string): ProcSwap[] {
  const out: ProcSwap[] = [];
  for (const line of text.split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5) continue;
    const type = cols[1] === "file" ? "file" : "partition";
    out.push({
      path: cols[0]!.replace(/\\040/g, " "),
      type,
      sizeBytes: Number(cols[2]) * 1024,
      priority: Number(cols[4]),
    });
  }
  return out;
}

const IpAddrSchema = z.array(
  z.object({
    ifname: z.string(),
    address: z.string().optional(),
    link_type: z.string().optional(),
    operstate: z.string().optional(),
    addr_info: z
      .array(z.object({ family: z.string(), local: z.string(), prefixlen: z.number() }))
      .optional(),
  }),
);

export function parseIpAddr(text: string): Host["network"] {
  return IpAddrSchema.parse(JSON.parse(text))
    .filter((link) => link.link_type !== "loopback")
    .map((link) => ({
      name: link.ifname,
      mac: link.address ?? null,
      state: (link.operstate ?? "UNKNOWN").toLowerCase(),
      addresses: (link.addr_info ?? [])
        .filter((a) => a.family === "inet" || a.family === "inet6")
        .map((a) => ({
          family: a.family as "inet" | "inet6",
          address: a.local,
          prefix: a.prefixlen,
        })),
    }));
}
