// The recovery log: every line goes to the console and to a file in the rescue system's
// /run (copied onto the recovered system at the end), each with its time. Step boundaries
// are also printed as machine-readable markers, which the VM harness and restore drills
// parse to split the recovery time into phases:
//
//   LIFEBOAT-STEP <name> start <unix ms>
//   LIFEBOAT-STEP <name> done <unix ms>
//   LIFEBOAT-STEP <name> failed <unix ms>

import { appendFileSync, mkdirSync } from "node:fs";
import path from "node:path";

export interface LogSink {
  write(text: string): void;
}

export type StepState = "start" | "done" | "failed";

export function stepMarker(name: string, state: StepState, at: number): string {
  return `LIFEBOAT-STEP ${name} ${state} ${at}`;
}

export interface StepMark {
  name: string;
  state: StepState;
  at: number;
}

/** Every step marker in a console log, in order; anything else on a line is ignored. */
export function parseStepMarkers(text: string): StepMark[] {
  const out: StepMark[] = [];
  for (const match of text.matchAll(/LIFEBOAT-STEP (\S+) (start|done|failed) (\d+)/g)) {
    out.push({ name: match[1]!, state: match[2] as StepState, at: Number(match[3]) });
  }
  return out;
}

export class RecoveryLog {
  readonly file: string | null;
  readonly #console: LogSink;
  readonly #lines: string[] = [];
  readonly #now: () => number;

  constructor(console: LogSink, file: string | null, now: () => number = Date.now) {
    this.#console = console;
    this.file = file;
    this.#now = now;
    if (file) mkdirSync(path.dirname(file), { recursive: true });
  }

  /** A line for people: console and file. */
  say(text: string) {
    for (const line of text.replace(/\n$/, "").split("\n")) {
      const stamped = `${new Date(this.#now()).toISOString()} ${line}`;
      this.#lines.push(stamped);
      this.#console.write(`${line}\n`);
      if (this.file) appendFileSync(this.file, `${stamped}\n`);
    }
  }

  /** Tool output: kept in the file, shown on the console only when asked. */
  detail(text: string, show: boolean) {
    for (const line of text.replace(/\n$/, "").split("\n")) {
      const stamped = `${new Date(this.#now()).toISOString()}   | ${line}`;
      this.#lines.push(stamped);
      if (show) this.#console.write(`  | ${line}\n`);
      if (this.file) appendFileSync(this.file, `${stamped}\n`);
    }
  }

  mark(name: string, state: StepState): number {
    const at = this.#now();
    this.say(stepMarker(name, state, at));
    return at;
  }

  text(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}
