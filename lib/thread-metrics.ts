/**
 * A worker thread's own heap and garbage collection as metrics labelled with its thread id. The
 * default process metrics (lib/metrics.ts) read the isolate they run in, so a service that keeps
 * them on its main thread (the ingest, services/ingest/threads.ts) would otherwise show nothing of
 * the heaps where its batches live, nor of the collections that stall its consumers.
 */
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';
import { threadId } from 'node:worker_threads';
import client from 'prom-client';
import type { Registry } from './metrics.ts';

/** The kinds of a gc entry, named as the default metrics name them (nodejs_gc_duration_seconds). */
const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

/** Registers `<prefix>_thread_heap_*` and `<prefix>_thread_gc_seconds_total`; returns a function that stops the GC observer. */
export function threadRuntimeMetrics(reg: Registry, prefix: string): () => void {
  const thread = String(threadId);
  new client.Gauge({
    name: `${prefix}_thread_heap_used_bytes`, help: 'V8 heap in use by this thread\'s isolate', labelNames: ['thread'], registers: [reg.prom],
    collect() { this.set({ thread }, v8.getHeapStatistics().used_heap_size); },
  });
  new client.Gauge({
    name: `${prefix}_thread_heap_limit_bytes`, help: 'The heap size this thread\'s isolate may reach before it fails', labelNames: ['thread'], registers: [reg.prom],
    collect() { this.set({ thread }, v8.getHeapStatistics().heap_size_limit); },
  });
  const gc = new client.Counter({
    name: `${prefix}_thread_gc_seconds_total`, help: 'Time this thread spent in garbage collection, by kind', labelNames: ['thread', 'kind'], registers: [reg.prom],
  });
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[]) {
      gc.inc({ thread, kind: GC_KINDS[e.detail?.kind ?? 0] ?? 'other' }, e.duration / 1000);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
