// Typed errors and the one place that turns them into exit codes.
//
// Every expected failure is a LifeboatError with a stable code (LB_*), a message that
// says what is wrong, and a hint that names the fix. Anything else reaching the top
// level is a bug and is reported as an internal error.

export type ErrorKind =
  /** A check ran and found a problem (drift, failed verification). */
  | "check"
  /** The command line itself is wrong. */
  | "usage"
  /** A file or value the user gave is wrong (malformed layout, bad --map). */
  | "input"
  /** The machine can't do it: missing tool, no permission, unreachable server. */
  | "environment";

export const EXIT = {
  ok: 0,
  check: 1,
  usage: 2,
  input: 2,
  environment: 3,
  /** Not part of the contract: an unexpected error, which is a bug. */
  internal: 4,
} as const;

export interface LifeboatErrorInit {
  kind: ErrorKind;
  code: string;
  message: string;
  hint?: string;
  cause?: unknown;
}

export class LifeboatError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly hint: string | undefined;

  constructor(init: LifeboatErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "LifeboatError";
    this.kind = init.kind;
    this.code = init.code;
    this.hint = init.hint;
  }
}

export function usageError(code: string, message: string, hint?: string): LifeboatError {
  return new LifeboatError({ kind: "usage", code, message, hint });
}

export function inputError(code: string, message: string, hint?: string): LifeboatError {
  return new LifeboatError({ kind: "input", code, message, hint });
}

export function environmentError(
  code: string,
  message: string,
  hint?: string,
  cause?: unknown,
): LifeboatError {
  return new LifeboatError({ kind: "environment", code, message, hint, cause });
}

export function checkFailed(code: string, message: string, hint?: string): LifeboatError {
  return new LifeboatError({ kind: "check", code, message, hint });
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof LifeboatError) return EXIT[error.kind];
  return EXIT.internal;
}

/** The JSON shape of an error, for --json output and for the server's responses. */
export function errorToJson(error: unknown): { code: string; message: string; hint?: string } {
  if (error instanceof LifeboatError) {
    return error.hint === undefined
      ? { code: error.code, message: error.message }
      : { code: error.code, message: error.message, hint: error.hint };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    code: "LB_INTERNAL",
    message,
    hint: "This is a bug in Lifeboat. Rerun with --debug and report the output.",
  };
}
