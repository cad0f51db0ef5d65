// btrfs subvolume list / get-default and filesystem df (json).
import { z } from "zod";

export interface BtrfsSubvolume {
  id: number;
  parentId: number;
  path: string;
  uuid: string | null;
}

/** `btrfs subvolume list -p -u -q MOUNT`: one "key value" line per subvolume. */
export function parseSubvolumeList(text: string): BtrfsSubvolume[] {
  const out: BtrfsSubvolume[] = [];
  for (const line of text.split("\n")) {
    const id = /^ID (\d+)\b/.exec(line);
    if (!id) continue;
    const field = (name: string) => new RegExp(`\\b${name} (\\S+)`).exec(line)?.[1];
    const path = / path (.*)$/.exec(line)?.[1] ?? "";
    const uuid = field("uuid");
    out.push({
      id: Number(id[1]),
      parentId: Number(field("parent") ?? field("top level") ?? 5),
      path: path.replace(/^<FS_TREE>\//, ""),
      uuid: uuid && uuid !== "-" ? uuid : null,
    });
  }
  return out;
}

/** `btrfs subvolume get-default MOUNT`: "ID 5 (FS_TREE)" or "ID 256 gen 7 top level 5 path @". */
export function parseGetDefault(text: string): { id: number; path: string } {
  const id = /^ID (\d+)/m.exec(text);
  if (!id) throw new Error("btrfs subvolume get-default printed no ID line");
  const path = / path (.*)$/m.exec(text)?.[1] ?? "";
  return { id: Number(id[1]), path: path.replace(/^<FS_TREE>\//, "") };
}

const DfSchema = z.object({
  "filesystem-df": z.array(z.object({ "bg-type": z.string(), "bg-profile": z.string() })),
});

/** `btrfs --format json filesystem df MOUNT`: the block-group profiles. */
export function parseFilesystemDf(text: string) {
  const groups = DfSchema.parse(JSON.parse(text))["filesystem-df"];
  const profile = (type: string) =>
    groups.find((g) => g["bg-type"] === type)?.["bg-profile"].toLowerCase() ?? null;
  return { data: profile("Data"), metadata: profile("Metadata"), system: profile("System") };
}
