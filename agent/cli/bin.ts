// Entry point of the lifeboat command (bin/lifeboat runs this with the pinned Node).
import { runCli } from "./main.ts";

void runCli(process.argv.slice(2)).then((code) => {
  // Exit once the output is flushed, without waiting for requests a failed command left in
  // flight (their sockets would otherwise keep the process alive until they time out).
  process.exitCode = code;
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
});
