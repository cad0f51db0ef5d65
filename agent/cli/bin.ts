// Entry point of the lifeboat command (bin/lifeboat runs this with the pinned Node).
import { runCli } from "./main.ts";

void runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
