// A drill as JUnit XML, so CI systems list drills as tests: one test suite per drill, one
// test case per phase and per probe, and one for the RTO budget. Pure.

import { DRILL_PHASES, type Drill } from "../../common/drills.ts";

export function xmlEscape(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;")
    .replace(/[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD]/gu, "");
}

interface Case {
  name: string;
  seconds: number;
  failure: string | null;
  skipped: boolean;
  output?: string;
}

function cases(drill: Drill): Case[] {
  const out: Case[] = [];
  for (const name of DRILL_PHASES) {
    const phase = drill.phases.find((p) => p.name === name);
    const failed = drill.failedPhase === name;
    if (!phase && !failed) {
      out.push({ name: `phase ${name}`, seconds: 0, failure: null, skipped: true });
      continue;
    }
    out.push({
      name: `phase ${name}`,
      seconds: phase?.seconds ?? 0,
      failure: failed || phase?.ok === false ? (drill.reason ?? "failed") : null,
      skipped: false,
    });
  }
  for (const probe of drill.probes) {
    out.push({
      name: `probe ${probe.name}`,
      seconds: probe.seconds,
      failure:
        probe.exitCode === 0
          ? null
          : probe.exitCode === null
            ? `${probe.command}: timed out or did not run`
            : `${probe.command}: exit code ${probe.exitCode}`,
      skipped: false,
      output: probe.output,
    });
  }
  if (drill.maxRtoSeconds !== null) {
    const rto = drill.rtoSeconds;
    out.push({
      name: `RTO within ${drill.maxRtoSeconds} s`,
      seconds: rto ?? 0,
      failure:
        rto === null
          ? "no RTO was measured: the drill did not finish"
          : rto > drill.maxRtoSeconds
            ? `RTO ${rto.toFixed(0)} s exceeds the budget of ${drill.maxRtoSeconds} s`
            : null,
      skipped: false,
    });
  }
  return out;
}

export function renderJunit(drill: Drill): string {
  const all = cases(drill);
  const failures = all.filter((c) => c.failure !== null).length;
  const skipped = all.filter((c) => c.skipped).length;
  const total = drill.rtoSeconds ?? all.reduce((sum, c) => sum + c.seconds, 0);
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="lifeboat drills" tests="${all.length}" failures="${failures}" time="${total.toFixed(3)}">`,
    `  <testsuite name="${xmlEscape(`drill ${drill.host}`)}" id="${xmlEscape(drill.id)}" tests="${all.length}" failures="${failures}" skipped="${skipped}" time="${total.toFixed(3)}" timestamp="${xmlEscape(drill.startedAt ?? drill.createdAt)}">`,
    "    <properties>",
    `      <property name="snapshot" value="${xmlEscape(drill.snapshot)}"/>`,
    `      <property name="rto_seconds" value="${drill.rtoSeconds ?? ""}"/>`,
    `      <property name="rpo_seconds" value="${drill.rpoSeconds ?? ""}"/>`,
    "    </properties>",
  ];
  for (const c of all) {
    const open = `    <testcase classname="${xmlEscape(`lifeboat.drill.${drill.host}`)}" name="${xmlEscape(c.name)}" time="${c.seconds.toFixed(3)}"`;
    if (!c.failure && !c.skipped && !c.output) {
      lines.push(`${open}/>`);
      continue;
    }
    lines.push(`${open}>`);
    if (c.skipped) lines.push("      <skipped/>");
    if (c.failure) {
      lines.push(
        `      <failure message="${xmlEscape(c.failure)}">${xmlEscape(c.failure)}</failure>`,
      );
    }
    if (c.output) lines.push(`      <system-out>${xmlEscape(c.output)}</system-out>`);
    lines.push("    </testcase>");
  }
  lines.push("  </testsuite>", "</testsuites>", "");
  return lines.join("\n");
}
