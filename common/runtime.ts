// How Lifeboat's Node runtime is started, by every launcher: bin/lifeboat, the rescue
// system's wrapper, the test systems' wrapper and the benchmark.
//
// --max-semi-space-size=1 (MiB): V8's young generation stays small. Backup and restore
// allocate a buffer for every read from tar, every chunk and every blob; with the default
// semi-space (16 MiB and more) those buffers outlive several young collections and their
// external memory piles up until full collections clear it. Measured on the benchmark
// dataset (bench/README.md): an unchanged backup took 6.3 s of CPU instead of 9.8 s and
// peaked at 190 MiB instead of 255-280 MiB; a first backup's agent peaked at 222 MiB instead
// of 297 MiB and the server at 118 MiB instead of 174 MiB, at the same speed. The flag
// has to be on the command line: V8 sizes the heap when it starts, and setting it later
// from inside the program changes nothing (checked).
export const NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1"];
