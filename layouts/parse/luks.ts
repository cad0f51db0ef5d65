// cryptsetup luksDump: LUKS2 through --dump-json-metadata (segments, keyslots, kdf) plus the
// text header (UUID, label, subsystem, which are not in the JSON); LUKS1 through the text.
import { z } from "zod";
import type { Luks } from "../schema.ts";
import { parseColonLines, toInt } from "./kv.ts";

type LuksParams = Omit<Luks, "device" | "mapperName" | "headerBackup">;

const Luks2JsonSchema = z.object({
  keyslots: z.record(
    z.string(),
    z.object({
      key_size: z.number(),
      area: z.object({ encryption: z.string().optional() }).optional(),
      kdf: z.object({
        type: z.string(),
        hash: z.string().optional(),
        iterations: z.number().optional(),
        time: z.number().optional(),
        memory: z.number().optional(),
        cpus: z.number().optional(),
      }),
    }),
  ),
  segments: z.record(
    z.string(),
    z.object({
      type: z.string(),
      offset: z.string(),
      encryption: z.string().optional(),
      sector_size: z.number().optional(),
      integrity: z.object({ type: z.string() }).optional(),
    }),
  ),
});

export function parseLuks2(jsonText: string, headerText: string): LuksParams {
  const json = Luks2JsonSchema.parse(JSON.parse(jsonText));
  const header = parseColonLines(headerText);
  const segment = Object.values(json.segments).find((s) => s.type === "crypt");
  if (!segment) throw new Error("LUKS2 metadata has no crypt segment");
  const slots = Object.values(json.keyslots);
  const slot = slots[0];
  const emptyIsNull = (v: string | undefined) =>
    v === undefined || v === "" || v === "(no label)" || v === "(no subsystem)" ? null : v;
  return {
    version: 2,
    uuid: requireField(header, "UUID"),
    label: emptyIsNull(header.Label),
    subsystem: emptyIsNull(header.Subsystem),
    cipher: segment.encryption ?? "aes-xts-plain64",
    keySizeBits: (slot?.key_size ?? 64) * 8,
    sectorSize: segment.sector_size ?? 512,
    dataOffsetBytes: Number(segment.offset),
    pbkdf: {
      type: slot?.kdf.type ?? "argon2id",
      hash: slot?.kdf.hash ?? null,
      iterations: slot?.kdf.iterations ?? slot?.kdf.time ?? null,
      memoryKiB: slot?.kdf.memory ?? null,
      parallelThreads: slot?.kdf.cpus ?? null,
    },
    integrity: segment.integrity?.type ?? null,
    keyslots: slots.length,
  };
}

export function parseLuks1(text: string): LuksParams {
  const header = parseColonLines(text);
  const slotIterations = /Key Slot \d+: ENABLED\s*\n\s*Iterations:\s*(\d+)/.exec(text);
  return {
    version: 1,
    uuid: requireField(header, "UUID"),
    label: null,
    subsystem: null,
    cipher: `${requireField(header, "Cipher name")}-${requireField(header, "Cipher mode")}`,
    keySizeBits: toInt(header["MK bits"]) ?? 256,
    sectorSize: 512,
    dataOffsetBytes: (toInt(header["Payload offset"]) ?? 0) * 512,
    pbkdf: {
      type: "pbkdf2",
      hash: header["Hash spec"] ?? null,
      iterations: slotIterations ? Number(slotIterations[1]) : null,
      memoryKiB: null,
      parallelThreads: null,
    },
    integrity: null,
    keyslots: (text.match(/Key Slot \d+: ENABLED/g) ?? []).length,
  };
}

function requireField(fields: Record<string, string>, key: string): string {
  const value = fields[key];
  if (value === undefined || value === "") throw new Error(`luksDump printed no ${key}`);
  return value;
}
