// The evidence report: per host, the RTO and RPO targets against what drills measured, the
// last successful drill, the history with pass/fail, the failures with their reasons, and a
// small chart of RTO over time. One self-contained HTML file (inline CSS and SVG, nothing
// fetched) an auditor can open anywhere, or the same facts as JSON. Pure.

import type { Drill, HostTargets } from "../../common/drills.ts";
import { formatDuration } from "../../agent/progress.ts";

export interface ReportHost {
  name: string;
  targets: HostTargets;
  /** Finished drills, any order. */
  drills: Drill[];
}

export interface ReportInput {
  generatedAt: Date;
  since: Date | null;
  hosts: ReportHost[];
}

export interface HostSummary {
  name: string;
  targets: HostTargets;
  drills: number;
  passed: number;
  failed: number;
  lastDrill: Drill | null;
  lastSuccess: Drill | null;
  /** The last successful drill against the targets: null when there is no target or no drill. */
  rtoMet: boolean | null;
  rpoMet: boolean | null;
  history: Drill[];
}

const finished = (d: Drill) => d.state === "passed" || d.state === "failed";
const when = (d: Drill) => d.startedAt ?? d.createdAt;

export function summarize(host: ReportHost, since: Date | null): HostSummary {
  const history = host.drills
    .filter(finished)
    .filter((d) => !since || new Date(when(d)).getTime() >= since.getTime())
    .sort((a, b) => when(b).localeCompare(when(a)));
  const lastSuccess = history.find((d) => d.state === "passed") ?? null;
  const met = (target: number | null, value: number | null | undefined) =>
    target === null || value === null || value === undefined ? null : value <= target;
  return {
    name: host.name,
    targets: host.targets,
    drills: history.length,
    passed: history.filter((d) => d.state === "passed").length,
    failed: history.filter((d) => d.state === "failed").length,
    lastDrill: history[0] ?? null,
    lastSuccess,
    rtoMet: met(host.targets.rtoSeconds, lastSuccess?.rtoSeconds),
    rpoMet: met(host.targets.rpoSeconds, lastSuccess?.rpoSeconds),
    history,
  };
}

export function reportJson(input: ReportInput) {
  return {
    generatedAt: input.generatedAt.toISOString(),
    since: input.since?.toISOString() ?? null,
    hosts: input.hosts.map((h) => summarize(h, input.since)),
  };
}

export function htmlEscape(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

const seconds = (value: number | null | undefined) =>
  value === null || value === undefined ? "–" : formatDuration(value);

function verdict(met: boolean | null): string {
  if (met === null) return '<span class="na">no target or no drill</span>';
  return met ? '<span class="ok">met</span>' : '<span class="bad">missed</span>';
}

/** RTO of each finished drill over time, oldest left; failed drills as red marks on the axis. */
export function rtoChart(history: Drill[], target: number | null): string {
  const width = 560;
  const height = 160;
  const pad = { left: 48, right: 12, top: 12, bottom: 24 };
  const points = [...history].reverse();
  if (points.length === 0) return '<p class="na">No drills yet.</p>';
  const values = points.map((d) => d.rtoSeconds ?? 0);
  const top = Math.max(...values, target ?? 0, 1) * 1.15;
  const x = (i: number) =>
    pad.left +
    (points.length === 1 ? 0.5 : i / (points.length - 1)) * (width - pad.left - pad.right);
  const y = (v: number) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const passed = points
    .map((d, i) => ({ d, i }))
    .filter(({ d }) => d.state === "passed" && d.rtoSeconds !== null);
  const line = passed
    .map(({ d, i }) => `${x(i).toFixed(1)},${y(d.rtoSeconds!).toFixed(1)}`)
    .join(" ");
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="RTO over time">`,
    `<line x1="${pad.left}" y1="${y(0)}" x2="${width - pad.right}" y2="${y(0)}" stroke="#888"/>`,
    `<line x1="${pad.left}" y1="${pad.top}" x2="${pad.left}" y2="${y(0)}" stroke="#888"/>`,
    `<text x="${pad.left - 6}" y="${y(top / 1.15) + 4}" text-anchor="end" font-size="10">${htmlEscape(formatDuration(top / 1.15))}</text>`,
    `<text x="${pad.left - 6}" y="${y(0) + 4}" text-anchor="end" font-size="10">0</text>`,
  ];
  if (target !== null) {
    parts.push(
      `<line x1="${pad.left}" y1="${y(target).toFixed(1)}" x2="${width - pad.right}" y2="${y(target).toFixed(1)}" stroke="#c60" stroke-dasharray="4 3"/>`,
      `<text x="${width - pad.right}" y="${(y(target) - 4).toFixed(1)}" text-anchor="end" font-size="10" fill="#c60">RTO target ${htmlEscape(formatDuration(target))}</text>`,
    );
  }
  if (passed.length > 1) {
    parts.push(`<polyline points="${line}" fill="none" stroke="#2a6" stroke-width="2"/>`);
  }
  for (const [i, d] of points.entries()) {
    const label = `${when(d)}: ${d.state}${d.rtoSeconds !== null ? `, RTO ${formatDuration(d.rtoSeconds)}` : ""}`;
    if (d.state === "passed" && d.rtoSeconds !== null) {
      parts.push(
        `<circle cx="${x(i).toFixed(1)}" cy="${y(d.rtoSeconds).toFixed(1)}" r="3.5" fill="#2a6"><title>${htmlEscape(label)}</title></circle>`,
      );
    } else {
      parts.push(
        `<path d="M${(x(i) - 4).toFixed(1)},${(y(0) - 4).toFixed(1)} l8,8 m0,-8 l-8,8" stroke="#c22" stroke-width="2"><title>${htmlEscape(label)}</title></path>`,
      );
    }
  }
  parts.push("</svg>");
  return parts.join("");
}

function hostSection(s: HostSummary): string {
  const last = s.lastSuccess;
  const rows = s.history
    .map(
      (d) => `<tr class="${d.state}">
  <td>${htmlEscape(when(d))}</td><td><code>${htmlEscape(d.snapshot)}</code></td>
  <td>${d.state === "passed" ? '<span class="ok">passed</span>' : '<span class="bad">failed</span>'}</td>
  <td>${seconds(d.rtoSeconds)}</td><td>${seconds(d.rpoSeconds)}</td>
  <td>${htmlEscape(d.failedPhase ?? "")}</td><td>${htmlEscape(d.reason ?? "")}</td></tr>`,
    )
    .join("\n");
  const failures = s.history.filter((d) => d.state === "failed");
  return `<section class="host" id="host-${htmlEscape(s.name)}">
<h2>${htmlEscape(s.name)}</h2>
<table class="targets">
<tr><th></th><th>target</th><th>measured (last successful drill)</th><th></th></tr>
<tr><th>RTO</th><td>${seconds(s.targets.rtoSeconds)}</td><td class="rto">${seconds(last?.rtoSeconds)}</td><td>${verdict(s.rtoMet)}</td></tr>
<tr><th>RPO</th><td>${seconds(s.targets.rpoSeconds)}</td><td class="rpo">${seconds(last?.rpoSeconds)}</td><td>${verdict(s.rpoMet)}</td></tr>
</table>
<p>Last successful drill: ${
    last
      ? `<strong class="last">${htmlEscape(when(last))}</strong>, snapshot <code>${htmlEscape(last.snapshot)}</code>, drill <code>${htmlEscape(last.id)}</code>`
      : '<strong class="bad">none</strong>'
  }. ${s.drills} drill(s) in this period: ${s.passed} passed, ${s.failed} failed.</p>
<h3>RTO over time</h3>
${rtoChart(s.history, s.targets.rtoSeconds)}
<h3>History</h3>
<table class="history"><tr><th>started</th><th>snapshot</th><th>result</th><th>RTO</th><th>RPO</th><th>failed phase</th><th>reason</th></tr>
${rows || '<tr><td colspan="7" class="na">No drills in this period.</td></tr>'}
</table>
${
  failures.length
    ? `<h3>Failures</h3><ul class="failures">${failures
        .map(
          (d) =>
            `<li>${htmlEscape(when(d))}: ${htmlEscape(d.failedPhase ?? "?")}: ${htmlEscape(d.reason ?? "no reason recorded")}</li>`,
        )
        .join("")}</ul>`
    : ""
}
</section>`;
}

export function renderReportHtml(input: ReportInput): string {
  const hosts = input.hosts.map((h) => summarize(h, input.since));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Lifeboat restore drill report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
.ok{color:#1a7a3a;font-weight:600}.bad{color:#b41c1c;font-weight:600}.na{color:#777}
tr.failed{background:#fff4f4}code{font-size:.9em}
</style></head><body>
<h1>Lifeboat restore drill report</h1>
<p>Generated ${htmlEscape(input.generatedAt.toISOString())}${input.since ? `, drills since ${htmlEscape(input.since.toISOString())}` : ""}. Each drill restored a snapshot onto a fresh virtual machine, booted it and checked it; RTO runs from the VM's start to the last check passing, RPO is the snapshot's age when the drill started.</p>
${hosts.length ? hosts.map(hostSection).join("\n") : '<p class="na">No hosts.</p>'}
</body></html>
`;
}
