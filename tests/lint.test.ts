/**
 * The layer rules and the type-aware rules of eslint.config.js really fire: probe files with a
 * deliberate violation are linted with the project's own config, then removed.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../lib/config.ts';

async function lintProbe(relative: string, code: string): Promise<string[]> {
  const file = path.join(projectRoot, relative);
  writeFileSync(file, code);
  try {
    const [result] = await new ESLint({ cwd: projectRoot }).lintFiles([file]);
    return result.messages.map((m) => `${m.ruleId}: ${m.message}`);
  } finally {
    rmSync(file, { force: true });
  }
}

describe('lint rules', () => {
  it('lib/ may not import services/ (nor activities, workflows, cli)', async () => {
    const messages = await lintProbe('lib/zz-lint-probe.ts', "import { Ingest } from '../services/ingest/consumer.ts';\nexport const x = Ingest;\n");
    expect(messages.join('\n')).toMatch(/no-restricted-imports: .*lib\/ must not import from services/);
  });

  it('cli/ may not call activities directly, but may import their types', async () => {
    const value = await lintProbe('cli/zz-lint-probe.ts', "import { createActivities } from '../activities/index.ts';\nexport const x = createActivities;\n");
    expect(value.join('\n')).toMatch(/cli\/ reaches activities only through Temporal/);
    const typeOnly = await lintProbe('cli/zz-lint-probe.ts', "import type { Activities } from '../activities/index.ts';\nexport type X = Activities;\n");
    expect(typeOnly).toEqual([]);
  });

  it('bench/ may not import tests/', async () => {
    const messages = await lintProbe('bench/zz-lint-probe.ts', "import { scratchDatabase } from '../tests/support/db.ts';\nexport const x = scratchDatabase;\n");
    expect(messages.join('\n')).toMatch(/bench\/ must not import from tests/);
  });

  it('a promise nobody awaits is an error', async () => {
    const messages = await lintProbe('lib/zz-lint-probe.ts', 'async function later(): Promise<void> {}\nlater();\n');
    expect(messages.join('\n')).toMatch(/no-floating-promises/);
  });

  it('the probes fire only on the violation: the same code without it is clean', async () => {
    expect(await lintProbe('lib/zz-lint-probe.ts', 'async function later(): Promise<void> {}\nawait later();\n')).toEqual([]);
  });
});
