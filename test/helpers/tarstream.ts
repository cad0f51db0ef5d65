// The whole archive spawnTarCreate produces, as one buffer, for tests that look at or
// extract the stream itself.
import { spawnTarCreate, type TarCreateOptions } from "../../agent/backup/tar.ts";

export async function readTarStream(
  options: TarCreateOptions,
): Promise<{ stream: Buffer; warnings: string[] }> {
  const tar = await spawnTarCreate(options);
  const parts: Buffer[] = [];
  for (let chunk = await tar.chunks.next(); chunk; chunk = await tar.chunks.next()) {
    parts.push(Buffer.from(chunk.data));
    chunk.release();
  }
  const { warnings } = await tar.done;
  return { stream: Buffer.concat(parts), warnings };
}
