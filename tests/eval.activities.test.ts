/**
 * The three evaluation activities as the worker runs them (MockActivityEnvironment, the shared
 * pool on the configured database). They only read, so the live database is safe to use; the
 * release ids are fresh, so whatever else it holds does not matter.
 */
import { randomBytes } from 'node:crypto';
import { DefaultLogger } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import type { GuardrailResult, JudgeResult } from '../lib/release/types.ts';
import { realActivities } from './support/activities.ts';
import { requireServer } from './support/servers.ts';

const env = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
const real = await realActivities(loadConfig());
const { checkGuardrails, judgeRelease, offlineGate } = real.activities;
const fresh = `eval-act-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  const url = new URL(loadConfig().postgres.url);
  await requireServer('postgres', Number(url.port || 5432), url.hostname);
});

afterAll(async () => {
  await real.close();
});

describe('evaluation activities', () => {
  it('judgeRelease on a release without exposures is Inconclusive, with a table and an explanation', async () => {
    const j = await env().run(judgeRelease, { releaseId: fresh }) as JudgeResult;
    expect(j.verdict).toBe('Inconclusive');
    expect(j.reason).toMatch(/^no data/);
    expect(j.table).toMatch(/per-user hit rate/);
    expect(j.explanation).toMatch(new RegExp(`^Release ${fresh}: `));
    expect(j.numbers.main_users).toBe(0);
    // Read-only: asking again gives the same answer.
    const again = await env().run(judgeRelease, { releaseId: fresh }) as JudgeResult;
    expect({ ...again.numbers, window_to: null }).toEqual({ ...j.numbers, window_to: null });
  });

  it('judgeRelease judges the window up to the asOf it is given, the same on a retry, and heartbeats while it aggregates', async () => {
    const asOf = '2026-01-02T03:04:05.000Z';
    const beats: unknown[] = [];
    const e = env();
    e.on('heartbeat', (d: unknown) => beats.push(d));
    const first = await e.run(judgeRelease, { releaseId: fresh, asOf }) as JudgeResult;
    const retry = await env().run(judgeRelease, { releaseId: fresh, asOf }) as JudgeResult;
    // Exposures count up to one attribution window before asOf, so that each had its window to convert.
    expect(Date.parse(asOf) - Date.parse(String(first.numbers.window_to))).toBe(evalSettings(loadConfig()).attributionWindowMs);
    expect(retry.numbers).toEqual(first.numbers);
    expect(beats).toContainEqual({ step: 'online metrics aggregated', asOf });
    const bad = await env().run(judgeRelease, { releaseId: fresh, asOf: 'yesterday' }).catch((err: unknown) => err);
    expect((bad as ApplicationFailure).nonRetryable).toBe(true);
    expect((bad as ApplicationFailure).message).toMatch(/asOf "yesterday" is not an ISO time/);
  });

  it('checkGuardrails with no nightly traffic holds nothing against it', async () => {
    const g = await env().run(checkGuardrails, { releaseId: fresh }) as GuardrailResult;
    expect(g).toMatchObject({ ok: true, violations: [] });
    expect(g.numbers.exposures).toBe(0);
  });

  it('offlineGate refuses a spec that cannot be read, without retries', async () => {
    const err = await env().run(offlineGate, { model: `models/${fresh}.json` }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).message).toMatch(/cannot read the file/);
  });
});
