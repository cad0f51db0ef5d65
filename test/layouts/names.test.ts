import { describe, expect, it } from "vitest";
import { partitionDevice } from "../../layouts/names.ts";

describe("partitionDevice", () => {
  it.each([
    ["/dev/sda", 1, "/dev/sda1"],
    ["/dev/vda", 12, "/dev/vda12"],
    ["/dev/xvdb", 3, "/dev/xvdb3"],
    ["/dev/nvme0n1", 1, "/dev/nvme0n1p1"],
    ["/dev/nvme10n1", 2, "/dev/nvme10n1p2"],
    ["/dev/mmcblk0", 2, "/dev/mmcblk0p2"],
    ["/dev/md0", 1, "/dev/md0p1"],
    ["/dev/md127", 3, "/dev/md127p3"],
    ["/dev/loop0", 1, "/dev/loop0p1"],
    ["/dev/cciss/c0d0", 5, "/dev/cciss/c0d0p5"],
  ])("%s, partition %i is %s", (disk, number, expected) => {
    expect(partitionDevice(disk, number)).toBe(expected);
  });

  it.each([0, -1, 1.5, Number.NaN])("rejects partition number %s", (number) => {
    expect(() => partitionDevice("/dev/sda", number)).toThrow(RangeError);
  });
});
