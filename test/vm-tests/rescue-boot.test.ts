import { describe, expect, it } from "vitest";
import { checkRescueConsole } from "../../vm-tests/rescue-boot.ts";

// Lines from a real UEFI boot of the rescue ISO (make vm-test-rescue), CR LF as on serial.
const UEFI_BOOT = [
  "lifeboat-init: Lifeboat rescue system, kernel 6.1.0-56-cloud-amd64",
  "lifeboat-init: modules: 79 loaded, not loaded (no such hardware or CPU feature): hv_vmbus xen_netfront",
  "lifeboat-init: firmware: UEFI, efivarfs mounted",
  "lifeboat-init: disks: vda(2G)",
  "lifeboat-init: network: dhcp eth0 10.0.2.15/24 via none",
  "lifeboat-init: mode: auto",
  "LIFEBOAT-RESCUE-READY",
  "lifeboat: error LB_RECOVER_NO_SNAPSHOT: The server has no committed snapshot for this host.",
  "!!! LIFEBOAT RECOVERY FAILED (exit code 2). The error is above.",
  "Lifeboat rescue shell. 'lifeboat recover' recovers this machine; log: /run/lifeboat/init.log.",
].join("\r\n");

describe("checkRescueConsole", () => {
  it("passes a good boot", () => {
    const checks = checkRescueConsole(UEFI_BOOT, "uefi");
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks).toHaveLength(6);
  });

  it("fails each missing piece", () => {
    const failing = (text: string, firmware: "bios" | "uefi" = "uefi") =>
      checkRescueConsole(text, firmware)
        .filter((c) => !c.ok)
        .map((c) => c.name);
    expect(failing(UEFI_BOOT, "bios")).toEqual(["firmware seen as bios"]);
    expect(failing(UEFI_BOOT.replace("10.0.2.15/24", "none"))).toEqual(["DHCP lease 10.0.2.15"]);
    expect(failing(UEFI_BOOT.replace("vda(2G)", " none"))).toEqual(["disk found"]);
    expect(failing(UEFI_BOOT.replace("79 loaded", "0 loaded"))).toEqual(["modules loaded"]);
    expect(failing(UEFI_BOOT.replace("LB_RECOVER_NO_SNAPSHOT", "LB_SERVER_UNREACHABLE"))).toEqual([
      "lifeboat asks the server with the built-in token, fails loudly: no snapshot",
    ]);
    expect(failing(UEFI_BOOT.replace("Lifeboat rescue shell", "reboot: Restarting"))).toEqual([
      "drops to a shell, no reboot",
    ]);
  });
});
