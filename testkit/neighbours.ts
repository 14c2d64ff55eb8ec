/**
 * Noisy neighbours for contention benchmarks: processes on the same cores that compete for what a
 * service needs to answer on time. Three kinds, cycled: a pure busy loop (CPU), a busy loop that
 * allocates and drops memory all the time (CPU, memory bandwidth, its own GC), and a writer that
 * fsyncs small appends in a loop (the disk queue and the kernel's writeback).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type NeighbourKind = 'busy' | 'alloc' | 'fsync';
export const neighbourKinds: NeighbourKind[] = ['busy', 'alloc', 'fsync'];

const programs: Record<NeighbourKind, string> = {
  busy: 'let x = 0; for (;;) { x = (x * 31 + 7) | 0; }',
  // Keeps ~64 MB live and replaces a slice of it all the time: steady allocation and major GCs.
  alloc: 'const keep = []; let i = 0; for (;;) { keep[i++ % 64] = new Array(131072).fill(i); }',
  // Small appends each followed by fsync; the file is truncated now and then so it stays small.
  fsync: `const fs = require('node:fs'); const f = process.argv[1]; let fd = fs.openSync(f, 'w'); let n = 0;
    const line = Buffer.alloc(4096, 120);
    for (;;) { fs.writeSync(fd, line); fs.fsyncSync(fd); if (++n % 2000 === 0) { fs.ftruncateSync(fd, 0); } }`,
};

export interface Neighbours { kinds: NeighbourKind[]; stop(): Promise<void> }

/** Starts `count` neighbours, kinds in turn (busy, alloc, fsync, busy, ...). */
export function startNeighbours(count: number): Neighbours {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-neighbour-'));
  const kinds: NeighbourKind[] = [];
  const procs: ChildProcess[] = [];
  for (let i = 0; i < count; i++) {
    const kind = neighbourKinds[i % neighbourKinds.length];
    kinds.push(kind);
    const args = kind === 'fsync' ? ['-e', programs[kind], path.join(dir, `w${i}`)] : ['-e', programs[kind]];
    procs.push(spawn(process.execPath, args, { stdio: 'ignore' }));
  }
  return {
    kinds,
    async stop() {
      await Promise.all(procs.map((p) => new Promise<void>((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) { resolve(); return; }
        p.once('exit', () => resolve());
        p.kill('SIGKILL');
      })));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** How many neighbours oversubscribe this machine `factor` times (one per core per unit). */
export const oversubscribed = (factor: number): number => factor * os.availableParallelism();
