import v8 from 'node:v8';
import vm from 'node:vm';
import { threadId } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Registry } from '../lib/metrics.ts';
import { threadRuntimeMetrics } from '../lib/thread-metrics.ts';

describe('threadRuntimeMetrics', () => {
  it('reports this isolate\'s heap and counts the time of a forced major collection', async () => {
    const reg = new Registry({ processMetrics: false });
    const stop = threadRuntimeMetrics(reg, 'test');
    try {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      gc();
      // The observer hears of a collection in a task after it.
      await new Promise((r) => setTimeout(r, 50));
      const text = await reg.render();
      const heap = text.match(new RegExp(`^test_thread_heap_used_bytes\\{thread="${threadId}"\\} (\\d+)$`, 'm'));
      expect(Number(heap?.[1])).toBeGreaterThan(1_000_000);
      const limit = text.match(/^test_thread_heap_limit_bytes\{thread="\d+"\} (\d+)$/m);
      expect(Number(limit?.[1])).toBeGreaterThan(Number(heap?.[1]));
      const major = text.match(/^test_thread_gc_seconds_total\{[^}]*kind="major"[^}]*\} (\S+)$/m);
      expect(Number(major?.[1])).toBeGreaterThan(0);
    } finally {
      stop();
    }
  });
});
