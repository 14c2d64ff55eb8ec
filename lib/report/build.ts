/**
 * The report's figures from the loaded rows (lib/report/data.ts), per answering slot and for the
 * whole platform. Every metric comes from lib/report/metrics.ts; this file only decides what is
 * counted over. Where the data for a section is missing, the section says so (`note`) instead of
 * failing, so a young database still gets a report.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../config.ts';
import { likeWeight } from '../models/rank.ts';
import { loadSpec } from '../models/spec.ts';
import type { ReportData, ServedList, WatchRow } from './data.ts';
import {
  averageRecommendationPopularity, catalogCoverage, exposureEntropy, exposureToWatchRatio, giniIndex, groupSpread,
  longTailShare, popularityLift, shortHead,
} from './metrics.ts';

export interface SlotFigures {
  lists: number;
  users: number;
  distinctMovies: number;
  gini: number | null;
  coverage: number | null;
  entropy: number | null;
  entropyNormalised: number | null;
  arp: number | null;
  longTailShare: number | null;
  popularityLift: { gapProfile: number; gapRecommended: number; lift: number | null; users: number } | null;
  /** Lists served to users with no watch before them: the model's cold-start list. */
  coldStartShare: number | null;
  /** Lists not served by the user's assigned slot (a fallback reason recorded, or the popular list). */
  fallbackShare: number | null;
  /** Lists old enough for their outcome to be known (served ≥ attribution window before `until`). */
  countedLists: number;
  hitRate: number | null;
  /** Mean reciprocal rank of the first started movie (0 for a miss): the list quality. */
  mrr: number | null;
  /** Exposure count per movie (the Lorenz curve and the Gini come from it). */
  exposureCounts: number[];
}

export interface GroupRow { group: string; users: number; lists: number; hitRate: number | null; mrr: number | null; arp: number | null }
export interface GroupDimension { groups: GroupRow[]; hitRateSpread: ReturnType<typeof groupSpread>; mrrSpread: ReturnType<typeof groupSpread> }
export interface MovieGroupRow { group: string; movies: number; exposures: number; exposureShare: number; watches: number; watchShare: number; ratio: number | null }

export interface DefaultRatingModel {
  spec: string;
  rule: string;
  /** How an unrated watch is scored, in words. */
  treatment: string;
  /** Mean like weight (about −1..1) the rule gives the period's unrated watches. */
  meanUnratedWeight: number | null;
  /** Over rated watches: what the rule would give them unrated, minus what their rating gives. */
  biasOnRated: number | null;
  /** Share of rated watches the default would place lower / higher than their rating does. */
  underRatedShare: number | null;
  overRatedShare: number | null;
}

export interface Report {
  generatedAt: string;
  period: { since: string; until: string; releaseId: string | null };
  attributionWindowMs: number;
  notes: string[];
  catalog: { movies: number; usersKnown: number; usersWithMetadata: number; shortHeadMovies: number };
  slots: Record<string, SlotFigures>;
  topRecommended: { movieId: string; exposures: number; share: number }[];
  topWatched: { movieId: string; watches: number; share: number }[];
  watchesFollowingRecommendation: { watches: number; followed: number; share: number | null };
  userGroups: { available: boolean; note: string | null; minListsForSpread: number; dimensions: Record<string, GroupDimension> };
  movieGroups: Record<string, MovieGroupRow[]>;
  defaultRating: { watches: number; rated: number; unratedShare: number | null; meanRating: number | null; ratingCounts: number[]; models: DefaultRatingModel[]; note: string | null };
  /** Filled by lib/report/loops.ts. */
  loops?: unknown;
}

const HEAD_SHARE = 0.2;
/** Groups with fewer lists of known outcome are listed but left out of the spread. */
export const MIN_LISTS_FOR_SPREAD = 30;

export function ageBand(age: number | null): string | null {
  if (age === null || !Number.isFinite(age)) return null;
  if (age < 18) return 'under 18';
  if (age < 25) return '18–24';
  if (age < 35) return '25–34';
  if (age < 45) return '35–44';
  if (age < 55) return '45–54';
  return '55+';
}

/** Index of watch start times per user and movie, for hit and "followed a list" tests. */
function watchIndex(watches: readonly WatchRow[]): Map<number, Map<string, number>> {
  const m = new Map<number, Map<string, number>>();
  for (const w of watches) {
    let u = m.get(w.userId);
    if (!u) m.set(w.userId, (u = new Map()));
    u.set(w.movieId, w.firstAt);
  }
  return m;
}

/** Rank (1-based) of the best-placed movie of the list the user started within W after it, or null. */
function hitRank(l: ServedList, idx: Map<number, Map<string, number>>, windowMs: number): number | null {
  const u = idx.get(l.userId);
  if (!u) return null;
  for (let i = 0; i < l.movieIds.length; i++) {
    const at = u.get(l.movieIds[i]);
    if (at !== undefined && at >= l.at && at < l.at + windowMs) return i + 1;
  }
  return null;
}

export function catalogIds(d: ReportData): string[] {
  const ids = new Set(d.movies.map((m) => m.id));
  for (const id of d.popularity.keys()) ids.add(id);
  for (const l of d.served) for (const id of l.movieIds) ids.add(id);
  return [...ids];
}

function slotFigures(lists: readonly ServedList[], d: ReportData, catalogSize: number, head: ReadonlySet<string>, idx: Map<number, Map<string, number>>, windowMs: number): SlotFigures {
  const counts = new Map<string, number>();
  const users = new Set<number>();
  const recommendedByUser = new Map<number, string[]>();
  let cold = 0, fallback = 0, counted = 0, hits = 0, rr = 0;
  for (const l of lists) {
    users.add(l.userId);
    for (const id of l.movieIds) counts.set(id, (counts.get(id) ?? 0) + 1);
    let r = recommendedByUser.get(l.userId);
    if (!r) recommendedByUser.set(l.userId, (r = []));
    r.push(...l.movieIds);
    const fw = d.firstWatch.get(l.userId);
    if (fw === undefined || fw >= l.at) cold++;
    if (l.fallback || l.slot === 'popular') fallback++;
    if (l.at + windowMs <= d.until) {
      counted++;
      const rank = hitRank(l, idx, windowMs);
      if (rank !== null) { hits++; rr += 1 / rank; }
    }
  }
  const exposureCounts = [...counts.values()];
  const entropy = exposureEntropy(exposureCounts, catalogSize);
  const n = lists.length;
  return {
    lists: n,
    users: users.size,
    distinctMovies: counts.size,
    gini: giniIndex(exposureCounts, catalogSize),
    coverage: catalogCoverage(counts.size, catalogSize),
    entropy: entropy?.entropy ?? null,
    entropyNormalised: entropy?.normalised ?? null,
    arp: averageRecommendationPopularity(lists.map((l) => l.movieIds), d.popularity),
    longTailShare: longTailShare(lists.map((l) => l.movieIds), head),
    popularityLift: popularityLift([...recommendedByUser].map(([u, rec]) => ({ profile: d.profiles.get(u) ?? [], recommended: rec })), d.popularity),
    coldStartShare: n ? cold / n : null,
    fallbackShare: n ? fallback / n : null,
    countedLists: counted,
    hitRate: counted ? hits / counted : null,
    mrr: counted ? rr / counted : null,
    exposureCounts: exposureCounts.sort((a, b) => a - b),
  };
}

function userGroups(d: ReportData, idx: Map<number, Map<string, number>>, windowMs: number, minLists: number): Report['userGroups'] {
  const withMeta = [...d.users.values()].filter((u) => u.age !== null || u.gender !== null || u.occupation !== null);
  if (withMeta.length === 0) {
    return {
      available: false,
      note: `no user metadata: ${d.userCounts.withMetadata} of ${d.userCounts.known} known users have age, gender or occupation filled `
        + '(the catalog service fills them from the info API); fairness across user groups cannot be measured',
      minListsForSpread: minLists,
      dimensions: {},
    };
  }
  const keyOf: Record<string, (u: { age: number | null; gender: string | null; occupation: string | null }) => string | null> = {
    age: (u) => ageBand(u.age),
    gender: (u) => u.gender,
    occupation: (u) => u.occupation,
  };
  const dims: Record<string, GroupDimension> = {};
  for (const [dim, key] of Object.entries(keyOf)) {
    const acc = new Map<string, { users: Set<number>; lists: number; counted: number; hits: number; rr: number; lists_: string[][] }>();
    for (const l of d.served) {
      const u = d.users.get(l.userId);
      const g = u ? key(u) : null;
      if (g === null || g === undefined) continue;
      let a = acc.get(g);
      if (!a) acc.set(g, (a = { users: new Set(), lists: 0, counted: 0, hits: 0, rr: 0, lists_: [] }));
      a.users.add(l.userId);
      a.lists++;
      a.lists_.push(l.movieIds);
      if (l.at + windowMs <= d.until) {
        a.counted++;
        const rank = hitRank(l, idx, windowMs);
        if (rank !== null) { a.hits++; a.rr += 1 / rank; }
      }
    }
    const groups: GroupRow[] = [...acc].map(([group, a]) => ({
      group, users: a.users.size, lists: a.lists,
      hitRate: a.counted ? a.hits / a.counted : null, mrr: a.counted ? a.rr / a.counted : null,
      arp: averageRecommendationPopularity(a.lists_, d.popularity),
    })).sort((x, y) => (x.group < y.group ? -1 : 1));
    // A handful of lists makes a hit rate noise: the spread is taken over groups with enough.
    const sized = groups.filter((g) => (acc.get(g.group)?.counted ?? 0) >= minLists);
    dims[dim] = {
      groups,
      hitRateSpread: groupSpread(sized.map((g) => ({ group: g.group, value: g.hitRate }))),
      mrrSpread: groupSpread(sized.map((g) => ({ group: g.group, value: g.mrr }))),
    };
  }
  const servedUsers = new Set(d.served.map((l) => l.userId));
  const without = [...servedUsers].filter((u) => !withMeta.some((m) => m.id === u)).length;
  return { available: true, minListsForSpread: minLists, note: without ? `${without} of ${servedUsers.size} served users have no metadata yet and are left out of the groups` : null, dimensions: dims };
}

function movieGroups(d: ReportData, catalog: readonly string[], windowed: readonly WatchRow[]): Record<string, MovieGroupRow[]> {
  const sorted = [...catalog].sort((a, b) => (d.popularity.get(b) ?? 0) - (d.popularity.get(a) ?? 0) || (a < b ? -1 : 1));
  const tier = new Map<string, string>();
  sorted.forEach((id, i) => tier.set(id, i < Math.ceil(0.2 * sorted.length) ? 'head (top 20 %)' : i < Math.ceil(0.5 * sorted.length) ? 'mid (next 30 %)' : 'tail (bottom 50 %)'));
  const meta = new Map(d.movies.map((m) => [m.id, m]));
  const groupers: Record<string, (id: string) => string[]> = {
    popularityTier: (id) => [tier.get(id) ?? 'tail (bottom 50 %)'],
    genre: (id) => meta.get(id)?.genres ?? [],
    language: (id) => { const l = meta.get(id)?.language; return l ? [l] : []; },
  };
  const exposures = new Map<string, number>();
  let totalExp = 0;
  for (const l of d.served) for (const id of l.movieIds) { exposures.set(id, (exposures.get(id) ?? 0) + 1); totalExp++; }
  const watches = new Map<string, number>();
  for (const w of windowed) watches.set(w.movieId, (watches.get(w.movieId) ?? 0) + 1);
  const totalW = windowed.length;
  const out: Record<string, MovieGroupRow[]> = {};
  for (const [name, of] of Object.entries(groupers)) {
    const acc = new Map<string, { movies: number; e: number; w: number }>();
    for (const id of catalog) {
      for (const g of of(id)) {
        let a = acc.get(g);
        if (!a) acc.set(g, (a = { movies: 0, e: 0, w: 0 }));
        a.movies++;
        a.e += exposures.get(id) ?? 0;
        a.w += watches.get(id) ?? 0;
      }
    }
    out[name] = [...acc].map(([group, a]) => ({
      group, movies: a.movies, exposures: a.e, exposureShare: totalExp ? a.e / totalExp : 0, watches: a.w, watchShare: totalW ? a.w / totalW : 0,
      ratio: exposureToWatchRatio(a.e, totalExp, a.w, totalW),
    })).sort((x, y) => y.exposures - x.exposures || (x.group < y.group ? -1 : 1)).slice(0, 20);
  }
  return out;
}

/** How each model spec in models/ turns an unrated watch into a like weight, against the ratings people did give. */
function defaultRating(d: ReportData, windowed: readonly WatchRow[]): Report['defaultRating'] {
  const runtime = new Map(d.movies.map((m) => [m.id, m.runtime]));
  const rated = windowed.filter((w) => w.rating !== null);
  const unrated = windowed.filter((w) => w.rating === null);
  const ratingCounts = [0, 0, 0, 0, 0];
  for (const w of rated) ratingCounts[w.rating! - 1]++;
  const models: DefaultRatingModel[] = [];
  const dir = path.join(projectRoot, 'models');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const { spec } = loadSpec(path.join('models', file));
    const p = spec.params as Record<string, unknown>;
    let weigh: (w: WatchRow, asIfUnrated: boolean) => number;
    let treatment: string;
    if (spec.rule === 'seed-popularity-rating') {
      const dflt = p.unratedRating as number;
      // The seed mixes (rating − 1)/4 into the score; on the like scale of the others that is (r − 3)/2.
      weigh = (w, u) => (((u || w.rating === null ? dflt : w.rating) - 3) / 2);
      treatment = `a fixed rating of ${dflt}: every unrated watch is a ${dflt}★ source, whatever share of the movie was seen`;
    } else {
      const lp = { neutralRating: p.neutralRating as number, neutralShare: p.neutralShare as number, implicitWeight: p.implicitWeight as number, defaultRuntimeMinutes: p.defaultRuntimeMinutes as number };
      weigh = (w, u) => likeWeight({ movieId: w.movieId, minutes: w.minutes, firstAt: w.firstAt, lastAt: w.firstAt, rating: u ? null : w.rating, ratedAt: null, runtime: runtime.get(w.movieId) ?? null }, lp);
      treatment = `the share of the runtime watched: ${lp.neutralShare * 100} % seen is neutral, more counts as liked (× ${lp.implicitWeight})`;
    }
    const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
    const diffs = rated.map((w) => weigh(w, true) - weigh(w, false));
    models.push({
      spec: `models/${file}`, rule: spec.rule, treatment,
      meanUnratedWeight: mean(unrated.map((w) => weigh(w, false))),
      biasOnRated: mean(diffs),
      underRatedShare: diffs.length ? diffs.filter((x) => x < -1e-9).length / diffs.length : null,
      overRatedShare: diffs.length ? diffs.filter((x) => x > 1e-9).length / diffs.length : null,
    });
  }
  return {
    watches: windowed.length,
    rated: rated.length,
    unratedShare: windowed.length ? unrated.length / windowed.length : null,
    meanRating: rated.length ? rated.reduce((s, w) => s + w.rating!, 0) / rated.length : null,
    ratingCounts,
    models,
    note: rated.length === 0 ? 'no watch of the period was rated: the default cannot be compared with real ratings' : null,
  };
}

export function buildReport(d: ReportData, windowMs: number, now = new Date(), minGroupLists = MIN_LISTS_FOR_SPREAD): Report {
  const notes: string[] = [];
  const catalog = catalogIds(d);
  const head = shortHead(d.popularity, catalog, HEAD_SHARE);
  const idx = watchIndex(d.watches);
  if (d.served.length === 0) notes.push('no recommendation was served in the period: exposure figures are empty');
  if (d.movies.length === 0) notes.push('the movies table is empty: the catalogue is taken as the movies seen in watches and lists');
  const bySlot = new Map<string, ServedList[]>();
  for (const l of d.served) {
    let a = bySlot.get(l.slot);
    if (!a) bySlot.set(l.slot, (a = []));
    a.push(l);
  }
  const slots: Record<string, SlotFigures> = { all: slotFigures(d.served, d, catalog.length, head, idx, windowMs) };
  for (const [slot, lists] of [...bySlot].sort()) slots[slot] = slotFigures(lists, d, catalog.length, head, idx, windowMs);

  const exp = new Map<string, number>();
  let totalExp = 0;
  for (const l of d.served) for (const id of l.movieIds) { exp.set(id, (exp.get(id) ?? 0) + 1); totalExp++; }
  const top = <T>(m: Map<string, number>, total: number, f: (id: string, n: number, share: number) => T) =>
    [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 20).map(([id, n]) => f(id, n, total ? n / total : 0));
  // Watches of the period proper (the loaded ones reach W past `until` for the outcomes).
  const windowed = d.watches.filter((w) => w.firstAt >= d.since && w.firstAt < d.until);
  const wc = new Map<string, number>();
  for (const w of windowed) wc.set(w.movieId, (wc.get(w.movieId) ?? 0) + 1);

  // A watch followed a recommendation when a list served to that user within W before it held the movie.
  const listsByUser = new Map<number, ServedList[]>();
  for (const l of d.served) {
    let a = listsByUser.get(l.userId);
    if (!a) listsByUser.set(l.userId, (a = []));
    a.push(l);
  }
  let followed = 0;
  for (const w of windowed) {
    if ((listsByUser.get(w.userId) ?? []).some((l) => l.at <= w.firstAt && w.firstAt < l.at + windowMs && l.movieIds.includes(w.movieId))) followed++;
  }

  const groups = userGroups(d, idx, windowMs, minGroupLists);
  if (!groups.available && groups.note) notes.push(groups.note);
  const dr = defaultRating(d, windowed);
  if (dr.note) notes.push(dr.note);
  return {
    generatedAt: now.toISOString(),
    period: { since: new Date(d.since).toISOString(), until: new Date(d.until).toISOString(), releaseId: d.releaseId },
    attributionWindowMs: windowMs,
    notes,
    catalog: { movies: catalog.length, usersKnown: d.userCounts.known, usersWithMetadata: d.userCounts.withMetadata, shortHeadMovies: head.size },
    slots,
    topRecommended: top(exp, totalExp, (movieId, exposures, share) => ({ movieId, exposures, share })),
    topWatched: top(wc, windowed.length, (movieId, watches, share) => ({ movieId, watches, share })),
    watchesFollowingRecommendation: { watches: windowed.length, followed, share: windowed.length ? followed / windowed.length : null },
    userGroups: groups,
    movieGroups: movieGroups(d, catalog, windowed),
    defaultRating: dr,
  };
}
