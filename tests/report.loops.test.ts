/**
 * The loop detectors on platforms with each loop injected on purpose (tests/support/loop-worlds.ts),
 * written to Postgres and read back by the report: each injected loop is flagged, and only it;
 * the same platform without injection flags none. Amplification also as the simulator makes it:
 * its users (the engine) with the --amplify switch on, against a popular-list recommender, and the
 * same run without the switch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeReport } from '../lib/report/run.ts';
import type { LoopReport } from '../lib/report/loops.ts';
import { scratchDatabase } from './support/db.ts';
import { loopWorld, simulatedPlatform, writeLoopWorld, type LoopWorldOptions } from './support/loop-worlds.ts';

const HOUR = 3_600_000;
const base = Date.parse('2026-02-01T00:00:00Z');
// Each world in its own stretch of time and its own user ids, so one database holds all four.
const worlds: Record<string, Partial<LoopWorldOptions>> = {
  normal: {},
  stale: { stale: [3, 6] },
  amplification: { amplify: true },
  homogenisation: { herdFrom: 3 },
};

describe('feedback-loop detection', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  const results: Record<string, LoopReport> = {};

  beforeAll(async () => {
    db = await scratchDatabase('loops');
    let k = 0;
    for (const [name, o] of Object.entries(worlds)) {
      const w = loopWorld({ seed: 11, start: base + k * 30 * 86_400_000, windows: 8, windowMs: HOUR, userOffset: k * 100_000, ...o });
      await writeLoopWorld(db.pool, w);
      const r = await makeReport(db.pool, { since: new Date(w.since), until: new Date(w.until), windowMs: HOUR, attributionWindowMs: 30 * 60_000 });
      results[name] = r.loops;
      k++;
    }
    for (const [name, amplifyRampMs] of [['simulated', undefined], ['simulated-amplify', 4.5 * HOUR]] as const) {
      const w = simulatedPlatform({ seed: 11, start: base + k * 30 * 86_400_000, warmupMs: HOUR / 2, durationMs: 4 * HOUR, userOffset: k * 100_000, amplifyRampMs });
      await writeLoopWorld(db.pool, w);
      const r = await makeReport(db.pool, { since: new Date(w.since), until: new Date(w.until), windowMs: HOUR / 2, attributionWindowMs: 30 * 60_000 });
      results[name] = r.loops;
      k++;
    }
  });
  afterAll(async () => { await db?.drop(); });

  const flagged = (name: string) => results[name].verdicts.filter((v) => v.detected).map((v) => v.loop);

  it('a normal run flags none', () => {
    expect(flagged('normal'), JSON.stringify(results.normal.verdicts, null, 1)).toEqual([]);
  });

  it('a frozen history (ingest down) is flagged as stale, in the frozen windows', () => {
    expect(flagged('stale'), JSON.stringify(results.stale.verdicts, null, 1)).toEqual(['stale-history']);
    const shares = results.stale.windows.map((w) => w.staleShare ?? 0);
    // Windows 3–5 are frozen; the first list after the freeze still reflects older watches.
    expect(Math.min(...shares.slice(4, 6))).toBeGreaterThan(0.5);
    expect(Math.max(...shares.slice(0, 3))).toBeLessThan(0.2);
    expect(results.stale.verdicts[0].evidence).toMatch(/previous list again/);
  });

  it('rising top-movie watch share with their list share is flagged as amplification', () => {
    expect(flagged('amplification'), JSON.stringify(results.amplification.verdicts, null, 1)).toEqual(['amplification']);
    const s = results.amplification.windows.map((w) => w.topWatchShare!);
    expect(s[7] - s[0]).toBeGreaterThan(0.2);
  });

  it('new users who all start the first default movie are flagged as homogenisation', () => {
    expect(flagged('homogenisation'), JSON.stringify(results.homogenisation.verdicts, null, 1)).toEqual(['homogenisation']);
    const j = results.homogenisation.windows.map((w) => w.newUserJaccard);
    expect(j.slice(3).every((x) => x === 1)).toBe(true);
    expect(Math.max(...j.slice(0, 3).map((x) => x ?? 0))).toBeLessThan(0.5);
  });

  it('the simulator\'s --amplify (users follow the most shown movies more and more) is flagged as amplification; the same run without it flags none', () => {
    console.log(JSON.stringify({ normal: results.simulated.verdicts, amplify: results['simulated-amplify'].verdicts }, null, 1));
    expect(flagged('simulated'), JSON.stringify(results.simulated.verdicts, null, 1)).toEqual([]);
    expect(flagged('simulated-amplify'), JSON.stringify(results['simulated-amplify'].verdicts, null, 1)).toEqual(['amplification']);
    const s = results['simulated-amplify'].windows.map((w) => w.topWatchShare!);
    const plain = results.simulated.windows.map((w) => w.topWatchShare!);
    expect(s[s.length - 1] - s[0]).toBeGreaterThan(0.2);
    expect(Math.abs(plain[plain.length - 1] - plain[0])).toBeLessThan(0.1);
  });
});
