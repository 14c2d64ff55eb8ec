import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * The fast tier (`npm run test:unit`): tests that need no running server. The time-skipping
 * Temporal test server is a binary the tests start themselves. The script points every server
 * address at a closed port, so a test that quietly needs the stack fails here instead of passing
 * on a developer's machine where the stack happens to run.
 */
export const unitTests = [
  'tests/canary.workflow.test.ts',
  'tests/cli.test.ts',
  'tests/config.test.ts',
  'tests/eval.test.ts',
  'tests/gateway.batch.test.ts',
  'tests/gateway.upstream.test.ts',
  'tests/history-cache.test.ts',
  'tests/ingest.minutes.test.ts',
  'tests/judge.test.ts',
  'tests/lint.test.ts',
  'tests/models.test.ts',
  'tests/parser.test.ts',
  'tests/report.metrics.test.ts',
  'tests/report.loops.noise.test.ts',
  'tests/report.simulator.test.ts',
  'tests/parser.fuzz.test.ts',
  'tests/reconcile.rules.test.ts',
  'tests/release-input.test.ts',
  'tests/routing.test.ts',
  'tests/runtime.test.ts',
  'tests/runtime.replicas.test.ts',
  'tests/supervise.test.ts',
  'tests/thread-metrics.test.ts',
  'tests/simulator.replay.test.ts',
];

// Not mergeConfig: it would append to the full suite's include list instead of replacing it.
export default defineConfig({ ...base, test: { ...base.test, include: unitTests, reporters: ['default'], fileParallelism: true } });
