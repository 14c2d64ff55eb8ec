/** Load generation and latency summaries shared by the gateway load test and the benchmarks. */
import { request, type Reply } from './net.ts';

/**
 * An open loop: request i goes out at start + i/rps whatever happened to earlier ones (a closed
 * loop would slow down with the server and hide its latency). Bounded by count and time.
 */
export async function openLoop(opts: { rps: number; seconds: number; url: (i: number) => string; onReply: (r: Reply, i: number) => void; timeoutMs?: number }): Promise<{ sent: number; elapsedMs: number }> {
  const t0 = Date.now();
  const tickMs = 10;
  const total = Math.floor(opts.rps * opts.seconds);
  const inflight = new Set<Promise<void>>();
  let sent = 0;
  for (let tick = 0; sent < total && Date.now() - t0 < opts.seconds * 1000 + 5000; tick++) {
    const due = Math.min(total, Math.floor(((tick + 1) * tickMs * opts.rps) / 1000));
    for (; sent < due; sent++) {
      const i = sent;
      const p = request(opts.url(i), { timeoutMs: opts.timeoutMs ?? 5000 }).then((r) => opts.onReply(r, i));
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    const wait = t0 + (tick + 1) * tickMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(inflight);
  return { sent, elapsedMs: Date.now() - t0 };
}

export function percentiles(values: number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1] ?? NaN };
}

/**
 * A closed loop: `concurrency` clients, each sending its next request when the last is answered,
 * for `seconds`; what a server sustains at saturation (the open loop above measures latency at a rate).
 */
export async function closedLoop(opts: { concurrency: number; seconds: number; url: (i: number) => string; onReply: (r: Reply, i: number) => void; timeoutMs?: number }): Promise<{ sent: number; elapsedMs: number }> {
  const t0 = Date.now();
  const end = t0 + opts.seconds * 1000;
  let sent = 0;
  const client = async () => {
    while (Date.now() < end) {
      const i = sent++;
      opts.onReply(await request(opts.url(i), { timeoutMs: opts.timeoutMs ?? 10_000 }), i);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, client));
  return { sent, elapsedMs: Date.now() - t0 };
}
