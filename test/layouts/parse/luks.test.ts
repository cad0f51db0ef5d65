// LUKS headers recorded with cryptsetup on image files (test/fixtures/host/record.sh).
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseLuks1, parseLuks2 } from "../../../layouts/parse/luks.ts";
import { FIXTURES } from "../../helpers/fixtures.ts";

const read = (name: string) => readFileSync(path.join(FIXTURES, "host", name), "utf8");

describe("cryptsetup luksDump", () => {
  it("LUKS1: cipher from name and mode, key size, payload offset, pbkdf2 iterations", () => {
    const luks = parseLuks1(read("luks1.dump.txt"));
    expect(luks).toMatchObject({
      version: 1,
      cipher: "aes-xts-plain64",
      keySizeBits: 512,
      sectorSize: 512,
      dataOffsetBytes: 4096 * 512,
      pbkdf: { type: "pbkdf2", hash: "sha256", iterations: 1000 },
      keyslots: 1,
      label: null,
    });
    expect(luks.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("LUKS2: segment and keyslot from the JSON metadata, UUID and label from the header", () => {
    const luks = parseLuks2(read("luks2.dump.json"), read("luks2.dump.txt"));
    expect(luks).toMatchObject({
      version: 2,
      label: "hostlabel",
      subsystem: null,
      cipher: "aes-xts-plain64",
      keySizeBits: 512,
      // cryptsetup picks 4096-byte sectors on an image file with 4 KiB blocks.
      sectorSize: 4096,
      dataOffsetBytes: 16 * 1048576,
      pbkdf: { type: "pbkdf2", hash: "sha256", iterations: 1000, memoryKiB: null },
      integrity: null,
      keyslots: 1,
    });
    expect(luks.uuid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("refuses a dump without a UUID instead of guessing", () => {
    expect(() => parseLuks1("Version: 1\nCipher name: aes\nCipher mode: xts-plain64\n")).toThrow(
      /UUID/,
    );
  });
});
