// sfdisk --json DEV: the partition table, converted from sectors to bytes.
import { z } from "zod";
import type { Partition, PartitionRole, PartitionTable } from "../schema.ts";

const SfdiskSchema = z.object({
  partitiontable: z.object({
    label: z.enum(["gpt", "dos"]),
    id: z.string(),
    device: z.string(),
    unit: z.literal("sectors"),
    firstlba: z.number().optional(),
    lastlba: z.number().optional(),
    sectorsize: z.number().optional(),
    partitions: z
      .array(
        z.object({
          node: z.string(),
          start: z.number(),
          size: z.number(),
          type: z.string(),
          uuid: z.string().optional(),
          name: z.string().optional(),
          attrs: z.string().optional(),
          bootable: z.boolean().optional(),
        }),
      )
      .default([]),
  }),
});

export const GPT_TYPES = {
  esp: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
  biosBoot: "21686148-6449-6E6F-744E-656564454649",
  linuxFs: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
  linuxSwap: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
  linuxLvm: "E6D6D379-F507-44C2-A23C-238F2A3DF928",
  linuxRaid: "A19D880F-05FC-4D3B-A006-743F0F84911E",
  xbootldr: "BC13C2FF-59E6-4262-A352-B275FD6F7172",
  prep: "9E1A2D38-C612-4316-AA26-8B49521E5A8B",
} as const;

const MBR_EXTENDED = new Set(["5", "f", "85"]);

/** Normalises an MBR type ("83", "0x83") to "0x83". */
export function mbrType(type: string): string {
  return `0x${type.replace(/^0x/i, "").toLowerCase()}`;
}

export function parseSfdiskJson(text: string, fallbackSectorSize = 512): PartitionTable {
  const table = SfdiskSchema.parse(JSON.parse(text)).partitiontable;
  const sectorSize = table.sectorsize ?? fallbackSectorSize;
  const isGpt = table.label === "gpt";
  const partitions = table.partitions.map((part): Partition => {
    const number = Number(/(\d+)$/.exec(part.node)?.[1] ?? 0);
    const type = isGpt ? part.type.toUpperCase() : mbrType(part.type);
    const extended = !isGpt && MBR_EXTENDED.has(type.slice(2));
    return {
      number,
      device: part.node,
      startBytes: part.start * sectorSize,
      sizeBytes: part.size * sectorSize,
      type,
      partUuid: isGpt
        ? (part.uuid?.toUpperCase() ?? null)
        : `${table.id.replace(/^0x/, "")}-${number.toString(16).padStart(2, "0")}`,
      name: part.name ?? null,
      attrs: part.attrs ?? null,
      bootable: part.bootable === true,
      kind: isGpt ? "primary" : extended ? "extended" : number >= 5 ? "logical" : "primary",
      roles: rolesFromType(isGpt, type, part.bootable === true, extended),
    };
  });
  return {
    type: table.label,
    id: isGpt ? table.id.toUpperCase() : table.id.toLowerCase(),
    sectorSize,
    firstLba: table.firstlba ?? null,
    lastLba: table.lastlba ?? null,
    partitions,
  };
}

function rolesFromType(
  isGpt: boolean,
  type: string,
  bootable: boolean,
  extended: boolean,
): PartitionRole[] {
  const roles: PartitionRole[] = [];
  if (isGpt) {
    if (type === GPT_TYPES.esp) roles.push("esp");
    if (type === GPT_TYPES.biosBoot) roles.push("bios_grub");
    if (type === GPT_TYPES.linuxRaid) roles.push("raid");
    if (type === GPT_TYPES.linuxLvm) roles.push("lvm");
    if (type === GPT_TYPES.linuxSwap) roles.push("swap");
    if (type === GPT_TYPES.xbootldr) roles.push("boot");
    return roles;
  }
  if (bootable) roles.push("boot");
  if (extended) roles.push("extended");
  if (type === "0xef") roles.push("esp");
  if (type === "0xfd") roles.push("raid");
  if (type === "0x8e") roles.push("lvm");
  if (type === "0x82") roles.push("swap");
  return roles;
}
