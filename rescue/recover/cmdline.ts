// The rescue system's settings on the kernel command line (lifeboat.* parameters). GRUB's
// menu entries and PXE configs set them; `lifeboat recover` reads them from /proc/cmdline so
// an unattended recovery needs no prompt and no file edited by hand.
//
//   lifeboat.mode=auto|interactive|shell    what the rescue system starts (lifeboat.auto=1 = auto)
//   lifeboat.server=URL                     the backup server, instead of the one built in
//   lifeboat.snapshot=ID                    recover this snapshot, not the newest
//   lifeboat.from=DIR                       recover offline from a snapshot export (the medium's)
//   lifeboat.keyfile=NAME=PATH              LUKS passphrase file for a device (mapper name or UUID)
//   lifeboat.keyurl=NAME=URL                fetch that passphrase from a key server
//   lifeboat.map=OLD=NEW                    put the layout's disk OLD on this machine's disk NEW
//   lifeboat.after=reboot|poweroff|shell    what automatic mode does after a recovery
//   lifeboat.drill=1                        a restore drill: leave the one-shot drill check
//   lifeboat.ip=...                         network setup, read by the rescue init only

import { usageError } from "../../common/errors.ts";

export interface RescueCmdline {
  mode: "auto" | "interactive" | "shell" | null;
  server: string | null;
  snapshot: string | null;
  from: string | null;
  keyFiles: Record<string, string>;
  keyUrls: Record<string, string>;
  maps: Record<string, string>;
  after: "reboot" | "poweroff" | "shell" | null;
  drill: boolean;
}

/** Splits a kernel command line into words the way the kernel does (double quotes group). */
export function splitCmdline(text: string): string[] {
  const words: string[] = [];
  let current = "";
  let quoted = false;
  let started = false;
  for (const char of text) {
    if (char === '"') {
      quoted = !quoted;
      started = true;
    } else if (!quoted && /\s/.test(char)) {
      if (started) words.push(current);
      current = "";
      started = false;
    } else {
      current += char;
      started = true;
    }
  }
  if (started) words.push(current);
  return words;
}

/** NAME=VALUE inside a parameter's value (keyfile, keyurl, map). */
function pair(parameter: string, value: string): [string, string] {
  const index = value.indexOf("=");
  if (index <= 0 || index === value.length - 1) {
    throw usageError(
      "LB_CMDLINE",
      `Kernel parameter lifeboat.${parameter}=${value}: expected NAME=VALUE.`,
      `Fix it in the boot menu (press 'e' in GRUB), e.g. lifeboat.${parameter}=cr_root=/path.`,
    );
  }
  return [value.slice(0, index), value.slice(index + 1)];
}

export function parseCmdline(text: string): RescueCmdline {
  const out: RescueCmdline = {
    mode: null,
    server: null,
    snapshot: null,
    from: null,
    keyFiles: {},
    keyUrls: {},
    maps: {},
    after: null,
    drill: false,
  };
  for (const word of splitCmdline(text)) {
    if (!word.startsWith("lifeboat.")) continue;
    const eq = word.indexOf("=");
    const name = eq < 0 ? word.slice(9) : word.slice(9, eq);
    const value = eq < 0 ? "" : word.slice(eq + 1);
    switch (name) {
      case "mode":
        if (value !== "auto" && value !== "interactive" && value !== "shell") {
          throw usageError(
            "LB_CMDLINE",
            `Kernel parameter lifeboat.mode=${value}: expected auto, interactive or shell.`,
          );
        }
        out.mode = value;
        break;
      case "auto":
        if (value === "" || value === "1" || value === "yes") out.mode = "auto";
        break;
      case "server":
        out.server = value || null;
        break;
      case "snapshot":
        out.snapshot = value || null;
        break;
      case "drill":
        out.drill = value === "" || value === "1" || value === "yes";
        break;
      case "from":
        out.from = value || null;
        break;
      case "keyfile": {
        const [key, file] = pair(name, value);
        out.keyFiles[key] = file;
        break;
      }
      case "keyurl": {
        const [key, url] = pair(name, value);
        out.keyUrls[key] = url;
        break;
      }
      case "map": {
        const [from, to] = pair(name, value);
        out.maps[from] = to;
        break;
      }
      case "after":
        if (value !== "reboot" && value !== "poweroff" && value !== "shell") {
          throw usageError(
            "LB_CMDLINE",
            `Kernel parameter lifeboat.after=${value}: expected reboot, poweroff or shell.`,
          );
        }
        out.after = value;
        break;
      default:
        // lifeboat.ip and others belong to the init; unknown ones are left alone.
        break;
    }
  }
  return out;
}
