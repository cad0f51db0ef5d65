// The command table and the top-level error handling. This is the one place where errors
// become exit codes and messages; commands only throw.

import { EXIT, errorToJson, exitCodeFor, LifeboatError, usageError } from "../../common/errors.ts";
import {
  checkPositionals,
  makeContext,
  parseCommandArgs,
  renderCommandHelp,
  renderGroupHelp,
  type Command,
  type CommandContext,
} from "./command.ts";
import { backupCommands } from "./commands/backup.ts";
import { layoutCommands } from "./commands/layout.ts";
import { drillCommands } from "./commands/drill.ts";
import { hostCommands } from "./commands/host.ts";
import { standbyCommands } from "./commands/standby.ts";
import { pruneCommands } from "./commands/prune.ts";
import { recoverCommands } from "./commands/recover.ts";
import { rescueCommands } from "./commands/rescue.ts";
import { serverCommands } from "./commands/server.ts";
import { snapshotCommands } from "./commands/snapshots.ts";
import { verifyCommands } from "./commands/verify.ts";

export const COMMANDS: Command[] = [
  ...layoutCommands,
  ...serverCommands,
  ...hostCommands,
  ...snapshotCommands,
  ...verifyCommands,
  ...pruneCommands,
  ...backupCommands,
  ...recoverCommands,
  ...rescueCommands,
  ...drillCommands,
  ...standbyCommands,
];

export interface CliIo {
  stdout: CommandContext["stdout"];
  stderr: CommandContext["stderr"];
}

export const processIo: CliIo = {
  stdout: { write: (text) => void process.stdout.write(text), isTTY: !!process.stdout.isTTY },
  stderr: { write: (text) => void process.stderr.write(text), isTTY: !!process.stderr.isTTY },
};

/** Find the command whose path is the longest prefix of argv. */
function resolve(argv: string[]): { command?: Command; rest: string[]; words: string[] } {
  const words: string[] = [];
  for (const arg of argv) {
    if (arg.startsWith("-")) break;
    words.push(arg);
  }
  let best: Command | undefined;
  for (const command of COMMANDS) {
    const matches = command.path.every((word, index) => words[index] === word);
    if (matches && (!best || command.path.length > best.path.length)) best = command;
  }
  if (!best) return { rest: argv, words };
  return { command: best, rest: argv.slice(best.path.length), words };
}

export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  const debug = argv.includes("--debug");
  const json = argv.includes("--json");
  try {
    const { command, rest, words } = resolve(argv);
    if (!command) {
      const isGroup = words.length > 0 && COMMANDS.some((c) => c.path[0] === words[0]);
      const prefix = isGroup ? words.slice(0, 1) : [];
      const wantsHelp = argv.length === 0 || argv.includes("--help") || argv.includes("-h");
      if (wantsHelp && (isGroup ? words.length === 1 : words.length === 0)) {
        io.stdout.write(renderGroupHelp(prefix, COMMANDS));
        return EXIT.ok;
      }
      const unknown = words.length > 0 ? `'${words.join(" ")}'` : `'${argv[0] ?? ""}'`;
      throw usageError(
        "LB_USAGE_UNKNOWN_COMMAND",
        `Unknown command ${unknown}.`,
        `Run 'lifeboat ${prefix.join(" ")}${prefix.length ? " " : ""}--help' for the list of commands.`,
      );
    }
    const parsed = parseCommandArgs(command, rest);
    if (parsed.values.help === true) {
      io.stdout.write(renderCommandHelp(command));
      return EXIT.ok;
    }
    checkPositionals(command, parsed.positionals);
    const ctx = makeContext(command, parsed, io);
    return (await command.run(ctx)) ?? EXIT.ok;
  } catch (error) {
    reportError(error, io, { debug, json });
    return exitCodeFor(error);
  }
}

function reportError(error: unknown, io: CliIo, flags: { debug: boolean; json: boolean }) {
  const info = errorToJson(error);
  if (flags.json) io.stdout.write(`${JSON.stringify({ error: info })}\n`);
  const expected = error instanceof LifeboatError;
  let text = `lifeboat: ${expected ? "error" : "internal error"} ${info.code}: ${info.message}\n`;
  if (info.hint) text += `  hint: ${info.hint}\n`;
  if ((flags.debug || !expected) && error instanceof Error && error.stack) {
    text += `${error.stack}\n`;
    if (error.cause instanceof Error && error.cause.stack)
      text += `caused by: ${error.cause.stack}\n`;
  }
  io.stderr.write(text);
}
