/**
 * Scheduling priority of the whole process. On Linux a nice value belongs to a thread, and
 * os.setPriority(0, n) changes only the calling one; Node's other threads (V8's GC helpers, the
 * libuv pool) would stay at the old priority, and the main thread waits for the GC helpers in
 * every parallel scavenge: a starved helper then stalls the event loop. So every thread of the
 * process is set (from /proc/self/task), and threads started later inherit it.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';

export function setProcessPriority(nice: number): { threads: number } {
  let tids: number[] = [];
  try {
    tids = readdirSync('/proc/self/task').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch { /* not Linux: the process-wide call below is all there is */ }
  if (tids.length === 0) {
    os.setPriority(0, nice);
    return { threads: 1 };
  }
  for (const tid of tids) os.setPriority(tid, nice);
  return { threads: tids.length };
}

/**
 * Real-time round-robin scheduling (SCHED_RR at `priority`, 1..99) for every thread of the process,
 * through util-linux's chrt: a runnable gateway thread then always runs before ordinary (even
 * niced) neighbours. Safe for an event-driven process that mostly sleeps; the kernel's RT
 * throttling (sched_rt_runtime_us) still leaves the others 5 % should it ever spin.
 */
export function setRealtime(priority: number): void {
  execFileSync('chrt', ['--all-tasks', '--rr', '--pid', String(priority), String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
}
