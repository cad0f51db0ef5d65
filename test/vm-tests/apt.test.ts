import { describe, expect, it } from "vitest";
import {
  compareDebianVersions,
  findMirrorInSources,
  newestRecord,
  parseDeb822,
  relationNames,
} from "../../vm-tests/lib/apt.ts";
import { resolveKernelPackage } from "../../vm-tests/lib/debian-kernel.ts";

// Trimmed from `apt-cache show linux-image-cloud-amd64` on Debian 12 (two versions known).
const APT_CACHE_SHOW = `Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.176+1)
Version: 6.1.176-1
Installed-Size: 13
Provides: linux-latest-modules-6.1.0-50-cloud-amd64, virtualbox-guest-modules, wireguard-modules (= 1.0.0)
Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)
Description-en: Linux for x86-64 cloud (meta-package)
 This package depends on the latest Linux kernel and modules for use on
 cloud platforms.
Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.176-1_amd64.deb

Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.192-2_amd64.deb
`;

describe("parseDeb822", () => {
  it("splits records and joins continuation lines", () => {
    const records = parseDeb822(APT_CACHE_SHOW);
    expect(records).toHaveLength(2);
    expect(records[0]?.Version).toBe("6.1.176-1");
    expect(records[0]?.["Description-en"]).toBe(
      "Linux for x86-64 cloud (meta-package)\nThis package depends on the latest Linux kernel and modules for use on\ncloud platforms.",
    );
    expect(records[1]?.Filename).toBe(
      "pool/updates/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.192-2_amd64.deb",
    );
  });

  it("skips comments and tolerates CR LF", () => {
    const records = parseDeb822(
      "# a comment\r\nTypes: deb\r\nSuites: bookworm\r\n\r\n\r\nTypes: deb-src\r\n",
    );
    expect(records).toEqual([{ Types: "deb", Suites: "bookworm" }, { Types: "deb-src" }]);
  });
});

describe("relationNames", () => {
  it("drops versions and alternatives", () => {
    expect(relationNames("libc6 (>= 2.34), busybox | busybox-static, initramfs-tools")).toEqual([
      "libc6",
      "busybox",
      "initramfs-tools",
    ]);
    expect(relationNames(undefined)).toEqual([]);
  });
});

describe("compareDebianVersions", () => {
  it.each([
    ["6.1.192-2", "6.1.176-1", 1],
    ["6.1.176-1", "6.1.192-2", -1],
    ["1.0~rc1-1", "1.0-1", -1],
    ["1:0.9-1", "2.0-1", 1],
    ["2.38.1-5+deb12u3", "2.38.1-5", 1],
    ["2.38.1-5+deb12u3", "2.38.1-5+deb12u10", -1],
    ["1.0a", "1.0", 1],
    ["1.0", "1.0", 0],
    ["1.0-1", "1.0", 1],
  ])("%s vs %s", (a, b, expected) => {
    expect(Math.sign(compareDebianVersions(a, b))).toBe(expected);
  });
});

describe("resolveKernelPackage", () => {
  it("follows the newest metapackage version to its image package", () => {
    expect(newestRecord(parseDeb822(APT_CACHE_SHOW))?.Version).toBe("6.1.192-2");
    expect(resolveKernelPackage(APT_CACHE_SHOW)).toEqual({
      name: "linux-image-6.1.0-56-cloud-amd64",
      version: "6.1.192-2",
      release: "6.1.0-56-cloud-amd64",
    });
  });

  it("fails with a hint when there is no image dependency", () => {
    expect(() => resolveKernelPackage("Package: x\nVersion: 1\n")).toThrow(/linux-image/);
  });
});

describe("findMirrorInSources", () => {
  const sources = `Types: deb
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
`;

  it("takes the deb822 entry whose Suites include the suite", () => {
    const files = [{ name: "debian.sources", text: sources }];
    expect(findMirrorInSources(files, "bookworm")).toBe("http://mirror.invalid/debian");
    expect(findMirrorInSources(files, "bookworm-security")).toBe(
      "http://mirror.invalid/debian-security",
    );
    expect(findMirrorInSources(files, "trixie")).toBeUndefined();
  });

  it("skips disabled and deb-src entries, then falls back to sources.list", () => {
    const files = [
      {
        name: "a.sources",
        text: "Types: deb\nEnabled: no\nURIs: http://off.invalid/\nSuites: bookworm\n",
      },
      { name: "b.sources", text: "Types: deb-src\nURIs: http://src.invalid/\nSuites: bookworm\n" },
      {
        name: "sources.list",
        text: "# deb http://commented.invalid/ bookworm main\ndeb [arch=amd64] http://list.invalid/debian bookworm main\n",
      },
    ];
    expect(findMirrorInSources(files, "bookworm")).toBe("http://list.invalid/debian");
  });
});
