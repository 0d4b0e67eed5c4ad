// A measurement-only preload for bench/realnode_footprint.py (`node --require` through
// NODE_OPTIONS): on SIGUSR2 it writes the process's memory, as Node sees it, to
// "$CONVOSD_BENCH_MEMPROBE.<pid>.json". With CONVOSD_BENCH_MEMPROBE_GC=1 (and --expose-gc)
// it forces a full garbage collection first and writes the figures before and after it.
// Inert when CONVOSD_BENCH_MEMPROBE is unset. Never loaded by convosd itself.
"use strict";
const fs = require("node:fs");
const v8 = require("node:v8");

const out = process.env.CONVOSD_BENCH_MEMPROBE;
if (out) {
  process.on("SIGUSR2", () => {
    const before = process.memoryUsage();
    let after = null;
    if (process.env.CONVOSD_BENCH_MEMPROBE_GC === "1" && typeof globalThis.gc === "function") {
      globalThis.gc();
      after = process.memoryUsage();
    }
    const heap = v8.getHeapStatistics();
    const body = JSON.stringify({
      before,
      after,
      mallocedMemory: heap.malloced_memory,
      physical: heap.total_physical_size,
      spaces: Object.fromEntries(
        v8.getHeapSpaceStatistics().map((space) => [space.space_name, space.physical_space_size]),
      ),
      handles: process.getActiveResourcesInfo().length,
    });
    const path = `${out}.${process.pid}.json`;
    fs.writeFileSync(`${path}.tmp`, body);
    fs.renameSync(`${path}.tmp`, path);
  });
}
