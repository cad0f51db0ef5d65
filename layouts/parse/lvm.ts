// lvm fullreport (JSON, sizes in bytes) with an explicit column list per sub-report, so the
// fields we rely on are always present whatever lvm.conf says.
import { z } from "zod";
import type { Lv, LvSegment, Pv, Vg } from "../schema.ts";

export const LVM_FULLREPORT_ARGV = [
  "lvm",
  "fullreport",
  "--reportformat",
  "json",
  "--units",
  "b",
  "--nosuffix",
  "--configreport",
  "vg",
  "-o",
  "vg_uuid,vg_name,vg_extent_size,vg_size,vg_free",
  "--configreport",
  "pv",
  "-o",
  "pv_uuid,pv_name,vg_name,dev_size,pv_size,pe_start",
  "--configreport",
  "lv",
  "-o",
  "lv_uuid,lv_name,vg_name,lv_dm_path,lv_attr,lv_layout,lv_role,lv_active,lv_size,lv_metadata_size,pool_lv,data_percent",
  "--configreport",
  "seg",
  "-o",
  "lv_uuid,segtype,stripes,stripe_size,region_size,chunk_size,discards,zero,seg_start,seg_size,devices",
  "--configreport",
  "pvseg",
  "-o",
  "pv_uuid,lv_uuid,pvseg_start,pvseg_size",
];

const row = z.record(z.string(), z.string());
const ReportSchema = z.object({
  report: z.array(
    z.object({
      vg: z.array(row).default([]),
      pv: z.array(row).default([]),
      lv: z.array(row).default([]),
      seg: z.array(row).default([]),
    }),
  ),
});

type Row = Record<string, string>;
const num = (r: Row, key: string) => {
  const value = r[key];
  return value === undefined || value === "" ? 0 : Math.round(Number(value));
};
const strip = (name: string) => name.replace(/^\[(.*)\]$/, "$1");

export function parseLvmFullreport(text: string): { pvs: Pv[]; vgs: Vg[] } {
  const report = ReportSchema.parse(JSON.parse(text)).report;
  const pvs: Pv[] = [];
  const vgs: Vg[] = [];
  for (const entry of report) {
    for (const pv of entry.pv) {
      pvs.push({
        device: pv.pv_name ?? "",
        uuid: pv.pv_uuid ?? "",
        vg: pv.vg_name ? pv.vg_name : null,
        sizeBytes: num(pv, "pv_size"),
        deviceSizeBytes: num(pv, "dev_size"),
        peStartBytes: num(pv, "pe_start"),
      });
    }
    const vg = entry.vg[0];
    if (!vg) continue;
    const name = vg.vg_name ?? "";
    vgs.push({
      name,
      uuid: vg.vg_uuid ?? "",
      extentSizeBytes: num(vg, "vg_extent_size"),
      sizeBytes: num(vg, "vg_size"),
      freeBytes: num(vg, "vg_free"),
      pvs: entry.pv.map((pv) => pv.pv_name ?? ""),
      lvs: entry.lv.map((lv) => toLv(name, lv, entry.seg)),
      metadataBackup: null,
    });
  }
  return { pvs, vgs };
}

function toLv(vg: string, lv: Row, segRows: Row[]): Lv {
  const uuid = lv.lv_uuid ?? "";
  const segments = segRows.filter((s) => s.lv_uuid === uuid).map(toSegment);
  const attr = lv.lv_attr ?? "";
  const layout = (lv.lv_layout ?? "").split(",");
  // lvm brackets the names of LVs it hides (rimage, tdata, pmspare). lv_role "private" is
  // not the same thing: a thin pool with thin volumes in it is private, and visible.
  const hidden = /^\[.*\]$/.test(lv.lv_name ?? "");
  const first = segRows.find((s) => s.lv_uuid === uuid);
  let role: Lv["role"] = "normal";
  if (hidden) role = "internal";
  else if (layout.includes("pool") && layout.includes("thin")) role = "thin-pool";
  else if (layout.includes("thin") && layout.includes("sparse")) role = "thin";
  else if (layout.includes("raid")) role = "raid";
  const name = strip(lv.lv_name ?? "");
  return {
    name,
    vg,
    uuid,
    device: lv.lv_dm_path || `/dev/mapper/${vg.replace(/-/g, "--")}-${name.replace(/-/g, "--")}`,
    sizeBytes: num(lv, "lv_size"),
    hidden,
    active: lv.lv_active === "active" || attr[4] === "a",
    role,
    segments,
    thinPool:
      role === "thin-pool"
        ? {
            metadataSizeBytes: num(lv, "lv_metadata_size"),
            chunkSizeBytes: first ? num(first, "chunk_size") : 0,
            zero: first?.zero ? first.zero === "zero" || first.zero === "1" : null,
            discards: first?.discards ? first.discards : null,
            dataPercent: lv.data_percent ? Number(lv.data_percent) : null,
          }
        : null,
    thinVolume: role === "thin" ? { pool: lv.pool_lv ? strip(lv.pool_lv) : "" } : null,
    raid:
      role === "raid" && first
        ? {
            mirrors: Math.max(0, num(first, "stripes") - 1),
            regionSizeBytes: first.region_size ? num(first, "region_size") : null,
          }
        : null,
  };
}

function toSegment(seg: Row): LvSegment {
  return {
    type: seg.segtype ?? "linear",
    startBytes: num(seg, "seg_start"),
    sizeBytes: num(seg, "seg_size"),
    stripes: num(seg, "stripes"),
    stripeSizeBytes: seg.stripe_size && seg.stripe_size !== "0" ? num(seg, "stripe_size") : null,
    devices: (seg.devices ?? "").split(",").filter(Boolean),
  };
}
