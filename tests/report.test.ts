/**
 * `marquee report` on a scratch database holding a small world written row by row, so every
 * figure can be worked out apart (here, with formulas other than the report's where there are
 * two: Gini by mean absolute difference instead of the sorted-rank sum). The HTML is then opened
 * in headless Chromium: every chart must be drawn (SVG paths) and visible (ink in its screenshot).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { evalSettings } from '../lib/eval/settings.ts';
import { runMarquee } from './support/cli.ts';
import { scratchDatabase } from './support/db.ts';
import { inkShare, launchChromium } from './support/browser.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const H = 3_600_000, M = 60_000, D = 24 * H;
const UNTIL = T0 + 8 * H;
const movies = 'abcdefghij'.split('').map((c) => `movie+${c}+2001`);
const [a, b, c, d, e, f, g, , , j] = movies;

interface W { user: number; movie: string; at: number; minutes?: number; rating?: number }
interface S { user: number; at: number; slot: string; ids: string[]; fallback?: string }

// Watchers before the period make the popularity: a 10, b 5, c 3, d 2, e 1 (users 100+).
const watches: W[] = [];
[[a, 10], [b, 5], [c, 3], [d, 2], [e, 1]].forEach(([m, n], k) => {
  for (let i = 0; i < (n as number); i++) watches.push({ user: 100 + 20 * k + i, movie: m as string, at: T0 - 3 * D });
});
watches.push(
  { user: 1, movie: a, at: T0 - 2 * D, rating: 5 }, { user: 1, movie: b, at: T0 - D },
  { user: 2, movie: a, at: T0 - 2 * D }, { user: 2, movie: c, at: T0 - D, rating: 2 },
  { user: 3, movie: d, at: T0 - D },
  { user: 5, movie: a, at: T0 - D },
  // In the period: three follow a list (u1 d, u3 a, u4 c), one does not (u2 j).
  { user: 1, movie: d, at: T0 + H + 10 * M, minutes: 90, rating: 4 },
  { user: 3, movie: a, at: T0 + 2 * H + 5 * M, minutes: 20 },
  { user: 4, movie: c, at: T0 + 2 * H + 20 * M, minutes: 60, rating: 5 },
  { user: 2, movie: j, at: T0 + 4 * H, minutes: 10 },
);
const served: S[] = [
  { user: 1, at: T0 + H, slot: 'main', ids: [c, d, e] }, // hit at rank 2
  { user: 2, at: T0 + H, slot: 'main', ids: [b, d, e] }, // miss
  { user: 3, at: T0 + 2 * H, slot: 'nightly', ids: [a, b, f] }, // hit at rank 1
  { user: 4, at: T0 + 2 * H, slot: 'main', ids: [a, b, c] }, // cold start (no watch before), hit at rank 3
  { user: 5, at: T0 + 3 * H, slot: 'popular', ids: [a, b, c], fallback: 'main_timeout' }, // fallback, miss
  { user: 1, at: UNTIL - 10 * M, slot: 'main', ids: [c, e, g] }, // too young for an outcome
];
const meta: [number, number, string, string][] = [[1, 20, 'F', 'student'], [2, 30, 'M', 'engineer'], [3, 40, 'F', 'engineer'], [4, 22, 'M', 'student']];

/** Gini by mean absolute difference: Σ_i Σ_j |x_i − x_j| / (2 n² μ) — another road to the same number. */
function giniByDifferences(x: number[]): number {
  const n = x.length, mu = x.reduce((s, v) => s + v, 0) / n;
  let sum = 0;
  for (const p of x) for (const q of x) sum += Math.abs(p - q);
  return sum / (2 * n * n * mu);
}

describe('marquee report', () => {
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let out: string;
  let report: Record<string, any>;
  const windowMs = evalSettings(loadConfig()).attributionWindowMs;

  beforeAll(async () => {
    db = await scratchDatabase('report');
    const p = db.pool;
    for (const [i, id] of movies.entries()) {
      await p.query('INSERT INTO movies (id, title, genres, original_language, runtime, fetched_at) VALUES ($1, $1, $2, $3, 100, now())',
        [id, [i < 2 ? 'Drama' : i < 4 ? 'Comedy' : 'Action'], i < 5 ? 'en' : 'fr']);
    }
    for (const [id, age, gender, occ] of meta) await p.query('INSERT INTO users (id, age, gender, occupation, fetched_at) VALUES ($1, $2, $3, $4, now())', [id, age, gender, occ]);
    await p.query('INSERT INTO users (id) VALUES (5)');
    for (const w of watches) {
      await p.query('INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) VALUES ($1, $2, $3, $3, $4, $4)', [w.user, w.movie, new Date(w.at), w.minutes ?? 100]);
      if (w.rating) await p.query('INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES ($1, $2, $3, $4)', [w.user, w.movie, w.rating, new Date(w.at + H)]);
    }
    for (const s of served) {
      await p.query('INSERT INTO served_recommendations (served_at, user_id, slot, movie_ids, latency_ms, fallback) VALUES ($1, $2, $3, $4, 10, $5)',
        [new Date(s.at), s.user, s.slot, s.ids, s.fallback ?? null]);
    }
    out = mkdtempSync(path.join(os.tmpdir(), 'marquee-report-'));
    const r = await runMarquee(['report',
      '--since', new Date(T0).toISOString(), '--until', new Date(UNTIL).toISOString(), '--window', '1h', '--min-group-lists', '1', '--out', out], {
      env: { MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name) }, timeoutMs: 120_000,
    });
    if (r.code !== 0) throw new Error(`marquee report exited ${r.code}:\n${r.out}`);
    expect(r.out).toMatch(/wrote .*report\.json and .*report\.html \(\d+ charts\)/);
    report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
  });

  afterAll(async () => {
    await db?.drop();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('computes the exposure figures of the platform and of each slot', () => {
    expect(windowMs).toBeGreaterThanOrEqual(15 * M); // the world above assumes the hits fall inside the window
    const all = report.slots.all;
    const counts = new Map<string, number>();
    for (const s of served) for (const id of s.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    const perMovie = movies.map((m) => counts.get(m) ?? 0);
    expect(all.lists).toBe(6);
    expect(all.users).toBe(5);
    expect(all.distinctMovies).toBe(7);
    expect(all.coverage).toBeCloseTo(7 / 10, 12);
    expect(all.gini).toBeCloseTo(giniByDifferences(perMovie), 12);
    // Popularity = distinct watchers up to `until`, in-period watches included.
    const pop = new Map<string, number>();
    for (const w of watches) pop.set(w.movie, (pop.get(w.movie) ?? 0) + 1);
    const listPop = (ids: string[]) => ids.reduce((s, id) => s + (pop.get(id) ?? 0), 0) / ids.length;
    expect(all.arp).toBeCloseTo(served.reduce((s, l) => s + listPop(l.ids), 0) / served.length, 9);
    // Short head = the top 2 of 10 movies by popularity: a and b.
    expect(report.catalog.shortHeadMovies).toBe(2);
    const tail = (ids: string[]) => ids.filter((id) => id !== a && id !== b).length / ids.length;
    expect(all.longTailShare).toBeCloseTo(served.reduce((s, l) => s + tail(l.ids), 0) / served.length, 12);
    expect(all.coldStartShare).toBeCloseTo(1 / 6, 12);
    expect(all.fallbackShare).toBeCloseTo(1 / 6, 12);
    expect(all.countedLists).toBe(5);
    expect(all.hitRate).toBeCloseTo(3 / 5, 12);
    expect(all.mrr).toBeCloseTo((1 / 2 + 1 + 1 / 3) / 5, 12);
    expect(report.slots.main.lists).toBe(4);
    expect(report.slots.nightly.lists).toBe(1);
    expect(report.slots.popular.lists).toBe(1);
    expect(report.slots.nightly.hitRate).toBe(1);
    // ΔGAP over users with a profile before their first list: u1 {a,b}, u2 {a,c}, u3 {d}, u5 {a}.
    const lift = all.popularityLift;
    const prof = [[a, b], [a, c], [d], [a]].map(listPop);
    const recs = [[c, d, e, c, e, g], [b, d, e], [a, b, f], [a, b, c]].map(listPop);
    expect(lift.users).toBe(4);
    expect(lift.gapProfile).toBeCloseTo(prof.reduce((s, x) => s + x, 0) / 4, 9);
    expect(lift.gapRecommended).toBeCloseTo(recs.reduce((s, x) => s + x, 0) / 4, 9);
  });

  it('has the seed\'s views, the groups and the default-rating bias', () => {
    expect(report.topRecommended.slice(0, 2).map((t: { movieId: string }) => t.movieId)).toEqual([b, c]); // 4 each, by id
    expect(report.topRecommended[0].exposures).toBe(4);
    expect(report.topWatched).toHaveLength(4);
    expect(report.watchesFollowingRecommendation).toEqual({ watches: 4, followed: 3, share: 0.75 });
    const gender = report.userGroups.dimensions.gender;
    expect(gender.groups.map((x: { group: string; hitRate: number }) => [x.group, x.hitRate])).toEqual([['F', 1], ['M', 0.5]]);
    expect(gender.hitRateSpread.spread).toBeCloseTo(0.5, 12);
    expect(report.userGroups.note).toMatch(/no metadata/);
    const lang = Object.fromEntries(report.movieGroups.language.map((x: { group: string; exposureShare: number; watchShare: number }) => [x.group, x]));
    // en = a..e: 16 of 18 exposures; 3 of 4 watches in the period (j is fr).
    expect(lang.en.exposureShare).toBeCloseTo(16 / 18, 12);
    expect(lang.en.watchShare).toBeCloseTo(3 / 4, 12);
    const dr = report.defaultRating;
    expect([dr.watches, dr.rated]).toEqual([4, 2]);
    expect(dr.meanRating).toBe(4.5);
    const seed = dr.models.find((m: { rule: string }) => m.rule === 'seed-popularity-rating');
    // Both rated watches (4★, 5★) would count as a 3★ source unrated: −0.5 and −1 on the like scale.
    expect(seed.biasOnRated).toBeCloseTo(-0.75, 12);
    expect(seed.underRatedShare).toBe(1);
  });

  it('judges the loops per window and finds none in this quiet world', () => {
    expect(report.loops.windows).toHaveLength(8);
    expect(report.loops.verdicts.map((v: { loop: string; detected: boolean }) => [v.loop, v.detected]))
      .toEqual([['stale-history', false], ['amplification', false], ['homogenisation', false]]);
  });

  it('a window cut short by the period\'s end is marked in the charts and said in a note; full windows are not', async () => {
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).not.toMatch(/\(short\)|less than half a window/);
    const shortOut = path.join(out, 'short');
    const r = await runMarquee(['report',
      '--since', new Date(T0).toISOString(), '--until', new Date(UNTIL + 10 * M).toISOString(), '--window', '1h', '--min-group-lists', '1', '--out', shortOut], {
      env: { MARQUEE_POSTGRES_URL: databaseUrl(loadConfig(), db.name) }, timeoutMs: 120_000,
    });
    expect(r.code, r.out).toBe(0);
    const shortHtml = readFileSync(path.join(shortOut, 'report.html'), 'utf8');
    expect(shortHtml).toMatch(/The window from 01-01 08:00 lasts 600 s, less than half a window/);
    expect(shortHtml).toMatch(/01-01 08:00 \(short\)/);
  });

  it('renders every chart of report.html in headless Chromium', async () => {
    const html = readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/); // self-contained: no script, no network
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1100, height: 900 });
      await page.goto(`file://${path.join(out, 'report.html')}`, { waitUntil: 'load' });
      const charts = await page.$$('figure.chart');
      const ids = await page.$$eval('figure.chart', (els) => els.map((el) => el.id));
      expect(ids).toEqual(expect.arrayContaining(['chart-top-recommended', 'chart-top-watched', 'chart-lorenz', 'chart-popularity-tiers',
        'chart-group-age', 'chart-group-gender', 'chart-group-occupation', 'chart-exposure-over-time', 'chart-loop-signals']));
      for (const [i, el] of charts.entries()) {
        const shapes = await el.$$eval('svg path, svg rect', (xs) => xs.length);
        expect(shapes, ids[i]).toBeGreaterThan(5);
        const box = await el.boundingBox();
        expect(box!.width * box!.height, ids[i]).toBeGreaterThan(100 * 100);
        expect(await inkShare(page, el), ids[i]).toBeGreaterThan(0.01);
      }
      const shot = await page.screenshot({ fullPage: true });
      writeFileSync(path.join(out, 'report.png'), shot);
      expect(shot.length).toBeGreaterThan(20_000);
    } finally {
      await browser.close();
    }
  });
});
