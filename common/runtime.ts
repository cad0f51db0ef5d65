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
//
// --initial-old-space-size=64 (MiB): the old generation's first allocation limit. V8 counts
// external memory (buffers) allocated since its last full collection against the old
// generation's room, and with the limit computed from Lifeboat's small heap (12-20 MB) that
// room is only about 9 MB: a restore, whose heap hardly grows while hundreds of MB of
// buffers pass through it, ran a full collection every 9 MB (about 95 of them) and spent about
// a third of its CPU on them. With the limit at 64 MiB, what starts a full collection is V8's
// own external-memory trigger (every 64 MB), which bounds the buffers waiting for collection
// as before. Measured side by side on the benchmark dataset: a restore's agent took 7.4-7.9 s
// of user CPU instead of 10.4-10.5 s (43 full collections instead of 91-102) at the same peak
// memory, and the server's full collections during it fell from 29 to 1; a first backup's
// agent ran 9 instead of 30-42 of them, for 10-19 MiB more peak memory. 128 MiB saved a
// little more CPU and cost 30 MiB in backups.
export const NODE_FLAGS: readonly string[] = [
  "--max-semi-space-size=1",
  "--initial-old-space-size=64",
];
