// Every launcher starts Node with the same flags (common/runtime.ts says why they matter).
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { NODE_FLAGS } from "../../common/runtime.ts";

const root = path.resolve(import.meta.dirname, "../..");

describe("Node flags", () => {
  it.each(["bin/lifeboat", "vm-tests/fixtures/guest/builder-lib.sh"])(
    "%s starts Node with NODE_FLAGS",
    (file) => {
      const text = readFileSync(path.join(root, file), "utf8");
      const launch = text
        .split("\n")
        .find((line) => /exec .*node"? /.test(line) && !line.trim().startsWith("#"));
      expect(launch, `no line of ${file} execs node`).toBeDefined();
      for (const flag of NODE_FLAGS) expect(launch).toContain(` ${flag} `);
    },
  );
});
