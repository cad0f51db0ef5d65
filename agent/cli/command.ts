// The shape of a CLI command, and the argument parsing and help text shared by all of them.
// Commands are plain data plus a run function; main.ts holds the table.

import { parseArgs } from "node:util";
import { usageError } from "../../common/errors.ts";

export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
  /** Placeholder shown in help, e.g. "FILE". */
  value?: string;
  description: string;
}

export interface PositionalSpec {
  name: string;
  required: boolean;
  multiple?: boolean;
}

export interface Command {
  /** Words that select the command, e.g. ["layout", "capture"]. */
  path: string[];
  summary: string;
  /** Longer text shown under --help. */
  description?: string;
  options: Record<string, OptionSpec>;
  positionals?: PositionalSpec[];
  /** Examples shown under --help. */
  examples?: string[];
  /** Returns the exit code (0 when omitted). Expected failures throw LifeboatError. */
  run(ctx: CommandContext): Promise<number | void>;
}

export interface Output {
  write(text: string): void;
}

export interface CommandContext {
  positionals: string[];
  string(name: string): string | undefined;
  strings(name: string): string[];
  flag(name: string): boolean;
  /** A required option: a usage error names it when missing. */
  requireString(name: string): string;
  json: boolean;
  debug: boolean;
  stdout: Output & { isTTY: boolean };
  stderr: Output & { isTTY: boolean };
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  help: { type: "boolean", short: "h", description: "Show this help." },
  debug: { type: "boolean", description: "Show stack traces and tool output on errors." },
};

type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export function parseCommandArgs(command: Command, argv: string[]) {
  const specs = { ...GLOBAL_OPTIONS, ...command.options };
  const config: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> =
    {};
  for (const [name, spec] of Object.entries(specs)) {
    config[name] = { type: spec.type };
    if (spec.multiple) config[name].multiple = true;
    if (spec.short) config[name].short = spec.short;
  }
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: config, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError(
      "LB_USAGE",
      `${commandName(command)}: ${(error as Error).message}`,
      `Run '${commandName(command)} --help' for the options.`,
    );
  }
  return parsed;
}

export function checkPositionals(command: Command, positionals: string[]): void {
  const specs = command.positionals ?? [];
  const required = specs.filter((spec) => spec.required).length;
  const variadic = specs.some((spec) => spec.multiple);
  if (positionals.length < required) {
    const missing = specs[positionals.length];
    throw usageError(
      "LB_USAGE",
      `${commandName(command)}: missing argument ${missing ? missing.name : ""}.`,
      `Usage: ${usageLine(command)}`,
    );
  }
  if (!variadic && positionals.length > specs.length) {
    throw usageError(
      "LB_USAGE",
      `${commandName(command)}: unexpected argument '${positionals[specs.length]}'.`,
      `Usage: ${usageLine(command)}`,
    );
  }
}

export function makeContext(
  command: Command,
  parsed: { values: Values; positionals: string[] },
  io: { stdout: CommandContext["stdout"]; stderr: CommandContext["stderr"] },
): CommandContext {
  const { values, positionals } = parsed;
  const string = (name: string) => {
    const value = values[name];
    return typeof value === "string" ? value : undefined;
  };
  return {
    positionals,
    string,
    strings: (name) => {
      const value = values[name];
      if (Array.isArray(value)) return value.filter((item) => typeof item === "string");
      return typeof value === "string" ? [value] : [];
    },
    flag: (name) => values[name] === true,
    requireString: (name) => {
      const value = string(name);
      if (value === undefined || value === "") {
        throw usageError(
          "LB_USAGE",
          `${commandName(command)}: --${name} is required.`,
          `Usage: ${usageLine(command)}`,
        );
      }
      return value;
    },
    json: values.json === true,
    debug: values.debug === true,
    stdout: io.stdout,
    stderr: io.stderr,
  };
}

export function commandName(command: Command): string {
  return ["lifeboat", ...command.path].join(" ");
}

export function usageLine(command: Command): string {
  const parts = [commandName(command)];
  for (const spec of command.positionals ?? []) {
    const name = spec.multiple ? `${spec.name} ...` : spec.name;
    parts.push(spec.required ? name : `[${name}]`);
  }
  if (Object.keys(command.options).length > 0) parts.push("[options]");
  return parts.join(" ");
}

export function renderCommandHelp(command: Command): string {
  const lines = [`Usage: ${usageLine(command)}`, "", command.summary];
  if (command.description) lines.push("", command.description);
  const specs = { ...command.options, ...GLOBAL_OPTIONS };
  lines.push("", "Options:");
  const rows = Object.entries(specs).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : ""}`;
    const repeat = spec.multiple ? " (repeatable)" : "";
    return [flag, spec.description + repeat] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  for (const [flag, text] of rows) lines.push(`  ${flag.padEnd(width)}  ${text}`);
  if (command.examples?.length) {
    lines.push("", "Examples:");
    for (const example of command.examples) lines.push(`  ${example}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Help for a word that groups commands ("lifeboat layout --help"), or the top level. */
export function renderGroupHelp(prefix: string[], commands: Command[]): string {
  const inGroup = commands.filter((command) =>
    prefix.every((word, index) => command.path[index] === word),
  );
  const title = ["lifeboat", ...prefix].join(" ");
  const lines = [`Usage: ${title} <command> [options]`, "", "Commands:"];
  const rows = inGroup.map((command) => [command.path.join(" "), command.summary] as const);
  const width = Math.max(...rows.map(([name]) => name.length));
  for (const [name, summary] of rows) lines.push(`  ${name.padEnd(width)}  ${summary}`);
  lines.push(
    "",
    `Run '${title} <command> --help' for a command's options.`,
    "",
    "Exit codes: 0 ok, 1 a check failed, 2 usage or input error, 3 environment error.",
  );
  return `${lines.join("\n")}\n`;
}
