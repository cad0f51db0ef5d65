// The options of a test backup: what every test names (the server, the host, the key, what
// to back up and where the agent keeps its state), and the rest as a plain run of
// `lifeboat backup --path` has it, with no layout and no progress output.

import type { BackupOptions } from "../../agent/backup/backup.ts";
import { createProgress } from "../../agent/progress.ts";

/** Progress that prints nothing, for tests that restore or back up. */
export const quietProgress = createProgress({ write() {}, isTTY: false }, { quiet: true });

export function backupOptions(
  named: Pick<BackupOptions, "client" | "host" | "keys" | "paths" | "stateDir">,
  extra: Partial<BackupOptions> = {},
): BackupOptions {
  return {
    excludes: [],
    hooks: { pre: [], post: [] },
    fullEvery: 7,
    captureLayout: null,
    progress: quietProgress,
    ...named,
    ...extra,
  };
}
