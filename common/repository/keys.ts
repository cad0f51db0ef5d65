// The repository key: 32 random bytes in a key file on the host (mode 0600). Three working
// keys are derived from it with HKDF-SHA-256, so that no key is used for two purposes:
//   idKey      HMAC key for chunk ids (ids reveal nothing about content without it)
//   dataKey    AES-256-GCM key for chunk and manifest blobs
//   chunkerKey seeds the gear table (boundaries don't reveal known files)
// keyId (first 8 bytes of SHA-256(idKey), hex) is stored in clear with each snapshot so a
// reader can tell which key it needs. See "Keys and trust" in docs/repository.md.

import { createHash, createSecretKey, hkdfSync, type KeyObject, randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { z } from "zod";
import { environmentError, inputError } from "../errors.ts";
import { writeFileAtomic } from "../fs.ts";

export interface RepoKeys {
  /**
   * KeyObjects, made once: node:crypto checks a raw key Buffer anew for every HMAC and
   * cipher it is given, about 30 µs each, which came to 0.2 s of a restore's main thread.
   */
  idKey: KeyObject;
  dataKey: KeyObject;
  chunkerKey: Buffer;
  keyId: string;
}

const KeyFileSchema = z.object({
  kind: z.literal("lifeboat/key"),
  version: z.literal(1),
  key: z
    .string()
    .refine((value) => Buffer.from(value, "base64").length === 32, "must be 32 bytes in base64"),
  createdAt: z.string(),
});

export function deriveKeys(master: Buffer): RepoKeys {
  if (master.length !== 32) throw new RangeError("the repository key must be 32 bytes");
  const derive = (info: string) =>
    Buffer.from(hkdfSync("sha256", master, Buffer.alloc(0), `lifeboat ${info} v1`, 32));
  const idKey = derive("chunk-id");
  return {
    idKey: createSecretKey(idKey),
    dataKey: createSecretKey(derive("data")),
    chunkerKey: derive("chunker"),
    keyId: createHash("sha256").update(idKey).digest().subarray(0, 8).toString("hex"),
  };
}

export async function createKeyFile(file: string): Promise<{ keys: RepoKeys }> {
  if (await stat(file).catch(() => null)) {
    throw inputError(
      "LB_KEY_EXISTS",
      `${file} already exists; refusing to overwrite a key (backups made with it would become unreadable).`,
      "Pick another file name, or remove the old key only if no backup needs it.",
    );
  }
  const master = randomBytes(32);
  const document = {
    kind: "lifeboat/key",
    version: 1,
    key: master.toString("base64"),
    createdAt: new Date().toISOString(),
  };
  await writeFileAtomic(file, `${JSON.stringify(document, null, 2)}\n`, 0o600);
  return { keys: deriveKeys(master) };
}

export async function loadKeyFile(file: string): Promise<{ keys: RepoKeys }> {
  let text: string;
  try {
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) {
      throw environmentError(
        "LB_KEY_PERMISSIONS",
        `Key file ${file} can be read by other users (mode ${(info.mode & 0o777).toString(8)}).`,
        `Restrict it: chmod 600 ${file}`,
      );
    }
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw inputError(
        "LB_KEY_NOT_FOUND",
        `Key file ${file} does not exist.`,
        "Give the key file the backups were made with (--key-file), or create a new one with 'lifeboat key create FILE'.",
      );
    }
    throw error;
  }
  let parsed: z.infer<typeof KeyFileSchema>;
  try {
    parsed = KeyFileSchema.parse(JSON.parse(text));
  } catch (error) {
    const detail =
      error instanceof z.ZodError
        ? error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")
        : (error as Error).message;
    throw inputError(
      "LB_KEY_INVALID",
      `Key file ${file} is not a Lifeboat key: ${detail}.`,
      "Use the file 'lifeboat key create' wrote, unchanged.",
    );
  }
  return { keys: deriveKeys(Buffer.from(parsed.key, "base64")) };
}
