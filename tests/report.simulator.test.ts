/**
 * The simulator's switches that produce feedback loops on purpose (issue 15): --herd makes new
 * users start the first movie of their first list; --stall holds lines back from Kafka for a
 * stretch while traffic goes on, then sends them in order; --amplify makes users follow the
 * platform's most shown movies more and more (that the report flags it: report.loops.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { durationMs } from '../lib/duration.ts';
import { parseLine } from '../lib/events/parser.ts';
import { Rng } from '../lib/random.ts';
import { Engine } from '../services/simulator/engine.ts';
import { MemorySink } from '../services/simulator/sink.ts';
import { parseStall, StallingSink } from '../services/simulator/stall.ts';
import { createWorld } from '../services/simulator/world.ts';
import { simulatedPlatform } from './support/loop-worlds.ts';

const HOUR = 3_600_000;

/** Per hour of the period, the share of first watches that went to the period's 10 most shown movies. */
function topWatchSharePerHour(amplifyRampMs?: number): { shares: number[]; trust: number[] } {
  const w = simulatedPlatform({ seed: 4, start: Date.UTC(2026, 0, 1), warmupMs: HOUR / 2, durationMs: 3 * HOUR, users: 2000, movies: 300, amplifyRampMs });
  const shown = new Map<string, number>();
  for (const l of w.served) for (const id of l.ids) shown.set(id, (shown.get(id) ?? 0) + 1);
  const top = new Set([...shown].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([id]) => id));
  const shares = [0, 1, 2].map((h) => {
    const ws = w.watches.filter((x) => x.at >= w.since + h * HOUR && x.at < w.since + (h + 1) * HOUR);
    return ws.filter((x) => top.has(x.movie)).length / ws.length;
  });
  return { shares, trust: [0, 1.75, 3.5].map((h) => w.engine.trustAt(w.since - HOUR / 2 + h * HOUR)) };
}

/** New users' first watched movie, with every list answered by the same default list. */
function firstWatchesOfNewUsers(herd: boolean): string[] {
  const world = createWorld({ seed: 5, movies: 300, users: 2000 });
  const list = world.movies.slice(0, 20).map((m) => m.id);
  const first = new Map<number, string>();
  const engine: Engine = new Engine(world, new Rng(9), {
    emit: (user, line) => {
      const r = parseLine(line);
      if (r.ok && r.event.kind === 'watch' && user >= 1000 && !first.has(user)) first.set(user, r.event.movieId);
    },
    recommend: (user, t) => {
      engine.at(t + 500, () => engine.answer(user, t, { server: 'test:1', status: 200, movieIds: list, error: null, latencyMs: 5 }, t + 500));
      return true;
    },
  }, { initialUsersFraction: 0.5, newAccountFraction: 0.5, herdNewUsers: herd });
  let t = Date.UTC(2026, 0, 1);
  for (let i = 0; i < 3000; i++) { t += 2000; engine.beginActivity(t); engine.runUntil(t); }
  engine.runUntil(t + 3_600_000);
  return [...first.values()];
}

describe('simulator loop switches', () => {
  it('herd: every new user asks on their first visit and starts the list\'s first movie; without it they spread', () => {
    const herded = firstWatchesOfNewUsers(true);
    const free = firstWatchesOfNewUsers(false);
    expect(herded.length).toBeGreaterThan(100);
    expect(new Set(herded).size).toBe(1);
    expect(herded[0]).toBe(createWorld({ seed: 5, movies: 300, users: 2000 }).movies[0].id);
    expect(free.length).toBeGreaterThan(100);
    expect(new Set(free).size).toBeGreaterThan(5);
  });

  it('amplify: trust ramps from 0 to 1 and the most shown movies take a growing share of the watches; without it the share holds', () => {
    const amplified = topWatchSharePerHour(3.5 * HOUR);
    expect(amplified.trust).toEqual([0, 0.5, 1]);
    expect(amplified.shares[2] - amplified.shares[0]).toBeGreaterThan(0.1);
    expect(amplified.shares[1]).toBeGreaterThan(amplified.shares[0]);
    const plain = topWatchSharePerHour();
    expect(plain.trust).toEqual([0, 0, 0]);
    expect(Math.abs(plain.shares[2] - plain.shares[0])).toBeLessThan(0.05);
    expect(amplified.shares[2]).toBeGreaterThan(plain.shares[2] + 0.1);
  });

  it('stall: lines are held for the stretch, count as no backlog, and go out in order after it', async () => {
    let now = 0;
    const inner = new MemorySink();
    const sink = new StallingSink(inner, parseStall('2s+3s', durationMs), () => now);
    sink.write('1', 'a'); // the run starts at 0
    now = 2500;
    sink.write('1', 'b');
    sink.write('2', 'c');
    expect(sink.holding()).toBe(true);
    expect(inner.lines).toEqual(['a']);
    expect(sink.backlog()).toBe(0);
    now = 5000;
    sink.write('1', 'd');
    expect(inner.lines).toEqual(['a', 'b', 'c', 'd']);
    expect(inner.keys).toEqual(['1', '1', '2', '1']);
    now = 3000;
    sink.write('3', 'e');
    now = 3100;
    await sink.close(); // held lines are not lost at the end either
    expect(inner.lines).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(sink.heldTotal).toBe(3);
    expect(() => parseStall('5m', durationMs)).toThrow(/<after>\+<for>/);
  });
});
