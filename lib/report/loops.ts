/**
 * Feedback-loop detection over consecutive windows of the report's period. Each loop gets a
 * verdict (detected or not) and the numbers behind it, so an operator can check the call.
 *
 * - stale history: users served the same list again although they had started a movie since the
 *   last one — the model did not see the watch (ingest down or lagging), so the platform keeps
 *   showing what it showed; and, while ingest is down outright, watches per served list collapse.
 * - amplification: the movies recommended most take a growing share of what is watched, window
 *   after window, while their share of the lists does not fall (Mansoury et al. 2020, "Feedback
 *   Loop and Bias Amplification in Recommender Systems"; Jiang et al. 2019, "Degenerate Feedback
 *   Loops in Recommender Systems").
 * - homogenisation: new users' first watches grow alike (Chaney, Stewart & Engelhardt 2018):
 *   the mean pairwise Jaccard overlap of the first watch of the users who started in a window.
 */
import type { ReportData, ServedList } from './data.ts';
import { catalogCoverage, giniIndex, meanPairwiseJaccard, pearson } from './metrics.ts';

export interface LoopThresholds {
  /** Stale: share of lists repeated although the user watched something since the last one. */
  staleShare: number;
  /** Stale: ... and at least this far above the period's median share. */
  staleRise: number;
  /** Stale: lists with a watch since the user's previous list needed in a window to judge it. */
  staleMinCandidates: number;
  /** Stale (ingest down): watches per list below this fraction of the period's median. */
  collapseFraction: number;
  /** Amplification: rise (absolute) of the top movies' watch share from the first to the last windows. */
  amplificationRise: number;
  /** ... and its one-sided z score (first third's watches against the last third's) at least this. */
  amplificationZ: number;
  /** Homogenisation: mean Jaccard of new users' first watches at or above this ... */
  homogenisationJaccard: number;
  /** ... in at least this many windows, each with this many new users. */
  homogenisationWindows: number;
  minNewUsers: number;
  /** Most recommended movies followed by the amplification check. */
  topMovies: number;
}

export const DEFAULT_LOOP_THRESHOLDS: LoopThresholds = {
  staleShare: 0.5, staleRise: 0.3, staleMinCandidates: 10, collapseFraction: 0.2,
  amplificationRise: 0.1, amplificationZ: 3, homogenisationJaccard: 0.5, homogenisationWindows: 2, minNewUsers: 5, topMovies: 10,
};

export interface LoopWindow {
  label: string;
  from: string;
  to: string;
  lists: number;
  watches: number;
  watchesPerList: number | null;
  gini: number | null;
  coverage: number | null;
  /** Lists (not fallbacks) whose user started a movie since their previous list, and how many of them repeated it. */
  staleCandidates: number;
  staleRepeats: number;
  staleShare: number | null;
  /** Share of the window's exposures and watches that went to the period's most recommended movies. */
  topRecShare: number | null;
  topWatchShare: number | null;
  /** New users judged in this window (its own, plus those passed on by windows with too few). */
  newUsers: number;
  newUserJaccard: number | null;
}

export interface LoopVerdict { loop: 'stale-history' | 'amplification' | 'homogenisation'; detected: boolean; evidence: string }

export interface LoopReport {
  windowMs: number;
  thresholds: LoopThresholds;
  windows: LoopWindow[];
  topMovies: string[];
  verdicts: LoopVerdict[];
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const fmt = (x: number | null, d = 2) => (x === null ? '–' : x.toFixed(d));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; };
const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);

export function detectLoops(d: ReportData, catalogSize: number, windowMs: number, t: LoopThresholds = DEFAULT_LOOP_THRESHOLDS): LoopReport {
  const count = Math.max(1, Math.ceil((d.until - d.since) / windowMs));
  const windowOf = (at: number) => Math.min(count - 1, Math.floor((at - d.since) / windowMs));

  const exp = new Map<string, number>();
  for (const l of d.served) for (const id of l.movieIds) exp.set(id, (exp.get(id) ?? 0) + 1);
  const topMovies = [...exp].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, t.topMovies).map(([id]) => id);
  const top = new Set(topMovies);

  // Watch start times per user, sorted, for "did they start something between two lists".
  const starts = new Map<number, number[]>();
  const inPeriod = d.watches.filter((w) => w.firstAt >= d.since && w.firstAt < d.until);
  for (const w of inPeriod) {
    let a = starts.get(w.userId);
    if (!a) starts.set(w.userId, (a = []));
    a.push(w.firstAt);
  }
  for (const a of starts.values()) a.sort((x, y) => x - y);
  const watchedBetween = (user: number, from: number, to: number) => (starts.get(user) ?? []).some((x) => x > from && x < to);

  const acc = Array.from({ length: count }, () => ({
    lists: [] as ServedList[], counts: new Map<string, number>(), exposures: 0, topExp: 0, watches: 0, topWatches: 0, cand: 0, rep: 0,
    firsts: [] as Set<string>[],
  }));
  const previous = new Map<number, ServedList>();
  for (const l of d.served) {
    const a = acc[windowOf(l.at)];
    a.lists.push(l);
    for (const id of l.movieIds) { a.counts.set(id, (a.counts.get(id) ?? 0) + 1); a.exposures++; if (top.has(id)) a.topExp++; }
    const p = previous.get(l.userId);
    // Fallback answers are the same popular list by design; only the model's own answers can be stale.
    if (p && !l.fallback && l.slot !== 'popular' && watchedBetween(l.userId, p.at, l.at)) {
      a.cand++;
      if (sameList(p.movieIds, l.movieIds)) a.rep++;
    }
    previous.set(l.userId, l);
  }
  for (const w of inPeriod) {
    const a = acc[windowOf(w.firstAt)];
    a.watches++;
    if (top.has(w.movieId)) a.topWatches++;
  }
  for (const u of d.newUsers) acc[windowOf(u.firstAt)].firsts.push(new Set(u.movies.slice(0, 1)));

  // New users are few per window: a window with fewer than minNewUsers passes its users on to the
  // next one, so each value judges at least that many (the last leftovers join the last value).
  const jaccards: (number | null)[] = acc.map(() => null);
  const judgedUsers: number[] = acc.map(() => 0);
  let pool: Set<string>[] = [];
  let lastJudged = -1;
  acc.forEach((a, i) => {
    pool.push(...a.firsts);
    if (pool.length >= t.minNewUsers) {
      jaccards[i] = meanPairwiseJaccard(pool);
      judgedUsers[i] = pool.length;
      lastJudged = i;
      pool = [];
    }
  });
  if (pool.length && lastJudged >= 0) {
    const all = [...pool, ...acc.slice(0, lastJudged + 1).flatMap((a) => a.firsts).slice(-judgedUsers[lastJudged])];
    jaccards[lastJudged] = meanPairwiseJaccard(all);
    judgedUsers[lastJudged] = all.length;
  }

  const windows: LoopWindow[] = acc.map((a, i) => {
    const from = d.since + i * windowMs;
    const to = Math.min(d.until, from + windowMs);
    return {
      label: new Date(from).toISOString().slice(5, 16).replace('T', ' '),
      from: new Date(from).toISOString(), to: new Date(to).toISOString(),
      lists: a.lists.length, watches: a.watches, watchesPerList: a.lists.length ? a.watches / a.lists.length : null,
      gini: giniIndex(a.counts.values(), catalogSize), coverage: catalogCoverage(a.counts.size, catalogSize),
      staleCandidates: a.cand, staleRepeats: a.rep, staleShare: a.cand ? a.rep / a.cand : null,
      topRecShare: a.exposures ? a.topExp / a.exposures : null, topWatchShare: a.watches ? a.topWatches / a.watches : null,
      newUsers: judgedUsers[i], newUserJaccard: jaccards[i],
    };
  });
  return { windowMs, thresholds: t, windows, topMovies, verdicts: [stale(windows, t), amplification(windows, windowMs, t), homogenisation(windows, t)] };
}

/** A window cut to less than half its length by the period's end (only the last can be). */
export function isShortWindow(w: LoopWindow, windowMs: number): boolean {
  return Date.parse(w.to) - Date.parse(w.from) < windowMs / 2;
}

/** z of the rise in the top movies' watch share from windows `a` to windows `b`, their watches pooled. */
function riseZ(a: LoopWindow[], b: LoopWindow[]): number {
  const pool = (ws: LoopWindow[]) => ws.reduce((s, w) => ({ n: s.n + w.watches, x: s.x + Math.round(w.topWatchShare! * w.watches) }), { n: 0, x: 0 });
  const p = pool(a), q = pool(b);
  const all = (p.x + q.x) / (p.n + q.n);
  const se = Math.sqrt(all * (1 - all) * (1 / p.n + 1 / q.n));
  const rise = q.x / q.n - p.x / p.n;
  return se > 0 ? rise / se : rise > 0 ? Infinity : 0;
}

function stale(ws: LoopWindow[], t: LoopThresholds): LoopVerdict {
  // Against the period's own median: a model that ignores history (a popularity list) repeats
  // itself after every watch, always; only a change from the usual is a stalled history.
  const judged = ws.filter((w) => w.staleCandidates >= t.staleMinCandidates);
  const usual = median(judged.map((w) => w.staleShare!)) ?? 0;
  const repeated = judged.filter((w) => w.staleShare! >= t.staleShare && w.staleShare! >= usual + t.staleRise);
  const wpl = ws.filter((w) => w.lists >= 20 && w.watchesPerList !== null).map((w) => w.watchesPerList!);
  const med = median(wpl);
  const collapsed = med !== null && med > 0 ? ws.filter((w) => w.lists >= 20 && w.watchesPerList !== null && w.watchesPerList < t.collapseFraction * med) : [];
  const detected = repeated.length > 0 || collapsed.length > 0;
  const worst = [...ws].filter((w) => w.staleCandidates >= t.staleMinCandidates).sort((a, b) => (b.staleShare ?? 0) - (a.staleShare ?? 0))[0];
  const parts = [
    repeated.length
      ? `in ${repeated.length} window(s) (from ${repeated[0].label}) ≥ ${t.staleShare * 100} % of the lists were the user's previous list again although they had started a movie since (worst ${fmt((worst.staleShare ?? 0) * 100, 0)} % of ${worst.staleCandidates}; usual ${fmt(usual * 100, 0)} %)`
      : `repeated lists after a new watch: at most ${worst ? `${fmt((worst.staleShare ?? 0) * 100, 0)} % (of ${worst.staleCandidates})` : 'n/a (too few lists with a watch since the previous one)'} per window, usual ${fmt(usual * 100, 0)} %; flagged from ${t.staleShare * 100} % and ${t.staleRise * 100} pts above usual`,
    collapsed.length
      ? `watches per list fell below ${t.collapseFraction * 100} % of the median ${fmt(med)} in ${collapsed.length} window(s) (from ${collapsed[0].label}: ${fmt(collapsed[0].watchesPerList)}) while lists kept being served`
      : `watches per list stayed within ${t.collapseFraction * 100} % of the median ${fmt(med)}`,
  ];
  return { loop: 'stale-history', detected, evidence: parts.join('; ') };
}

function amplification(ws: LoopWindow[], windowMs: number, t: LoopThresholds): LoopVerdict {
  // A window cut short by the period's end (often the quiet tail after traffic stopped) holds a
  // few seconds of watches: its share is noise and, as the last value, it would decide the rise.
  const full = ws.filter((w) => !isShortWindow(w, windowMs));
  const short = ws.length - full.length;
  const usable = full.filter((w) => w.topWatchShare !== null && w.topRecShare !== null && w.watches >= 20);
  if (usable.length < 3) return { loop: 'amplification', detected: false, evidence: `only ${usable.length} windows with ≥ 20 watches${short ? ` (${short} shorter than half a window left out)` : ''}; need 3` };
  const k = Math.max(1, Math.floor(usable.length / 3));
  const s = usable.map((w) => w.topWatchShare!), r = usable.map((w) => w.topRecShare!);
  const watchRise = mean(s.slice(-k))! - mean(s.slice(0, k))!;
  const recChange = mean(r.slice(-k))! - mean(r.slice(0, k))!;
  // The rise must also stand out of the sampling noise: the first and last thirds' watches pooled,
  // a one-sided two-proportion z test. Watches are not independent draws (the same users, whole
  // sessions), so this is a floor against small samples, not a significance claim: with many
  // watches the 10-point rise is what decides.
  const z = riseZ(usable.slice(0, k), usable.slice(-k));
  let ups = 0;
  for (let i = 1; i < s.length; i++) if (s[i] > s[i - 1]) ups++;
  const upShare = ups / (s.length - 1);
  const corr = pearson(r, s);
  // Rising over the period, in at least half of the steps, in step with the lists (Jiang et al.'s
  // degenerate loop needs both shares to move together).
  const detected = watchRise >= t.amplificationRise && z >= t.amplificationZ && upShare >= 0.5 && recChange >= -0.02 && (corr === null || corr >= 0.5);
  return {
    loop: 'amplification', detected,
    evidence: `the ${t.topMovies} most recommended movies' watch share went ${fmt(s[0] * 100, 1)} % → ${fmt(s[s.length - 1] * 100, 1)} % `
      + `(${watchRise >= 0 ? '+' : ''}${fmt(watchRise * 100, 1)} pts first→last third, rising in ${ups} of ${s.length - 1} steps) while their share of the lists went `
      + `${fmt(r[0] * 100, 1)} % → ${fmt(r[r.length - 1] * 100, 1)} %; correlation ${fmt(corr)}; rise z = ${fmt(z)}; flagged from a rise of ${t.amplificationRise * 100} pts with z ≥ ${t.amplificationZ}`
      + (short ? ` (${short} window(s) shorter than half a window left out)` : ''),
  };
}

function homogenisation(ws: LoopWindow[], t: LoopThresholds): LoopVerdict {
  const judged = ws.filter((w) => w.newUserJaccard !== null);
  const high = judged.filter((w) => w.newUserJaccard! >= t.homogenisationJaccard);
  const detected = high.length >= t.homogenisationWindows;
  const values = judged.map((w) => `${w.label}: ${fmt(w.newUserJaccard)} (${w.newUsers})`).join(', ');
  return {
    loop: 'homogenisation', detected,
    evidence: judged.length
      ? `mean Jaccard overlap of new users' first watches per window (users): ${values}; ${high.length} window(s) at or above ${t.homogenisationJaccard}, flagged from ${t.homogenisationWindows}`
      : `fewer than ${t.minNewUsers} new users in the whole period`,
  };
}
