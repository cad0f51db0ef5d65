// Block device naming rules shared by the importers and the planner.

/**
 * The kernel's name for partition `number` of `diskDevice`: the number is appended, with a
 * "p" in between when the disk name ends in a digit (so that /dev/nvme0n1 + 1 does not read
 * as /dev/nvme0n11). This is the rule of disk_name() in the kernel's block/partitions code;
 * device-mapper disks (multipath, kpartx) name their partitions differently and are not
 * covered.
 */
export function partitionDevice(diskDevice: string, number: number): string {
  if (!Number.isSafeInteger(number) || number < 1) {
    throw new RangeError(`partition number must be a positive integer, got ${number}`);
  }
  const separator = /\d$/.test(diskDevice) ? "p" : "";
  return `${diskDevice}${separator}${number}`;
}
