import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The Temporal worker's native runtime must live in one process per test file.
    pool: 'forks',
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    // The JSON report lets .ci/run print one plain 'N passed, N failed' line at the end.
    reporters: ['default', ['json', { outputFile: '.marquee/vitest-report.json' }]],
  },
});
