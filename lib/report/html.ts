/**
 * report.html: one self-contained page (inline CSS and SVG, no script, no network) with the
 * report's tables and charts.
 */
import type { Report, SlotFigures } from './build.ts';
import { groupedBars, horizontalBars, lines, lorenz, type Chart } from './charts.ts';
import { isShortWindow, type LoopReport } from './loops.ts';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const pct = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(d)} %`);
const num = (x: number | null | undefined, d = 3) => (x === null || x === undefined ? '–' : x.toFixed(d));

function table(head: string[], rows: (string | number)[][]): string {
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

const shortWindows = (loops: LoopReport) => loops.windows.filter((w) => isShortWindow(w, loops.windowMs));

/** Every chart of a report; a section without data gets no chart (its note says why). */
export function reportCharts(r: Report): Chart[] {
  const charts: Chart[] = [];
  if (r.topRecommended.length) charts.push(horizontalBars('top-recommended', 'Top 20 recommended movies (exposures)', r.topRecommended.map((t) => ({ label: t.movieId, value: t.exposures })), 'exposures'));
  if (r.topWatched.length) charts.push(horizontalBars('top-watched', 'Top 20 watched movies in the period', r.topWatched.map((t) => ({ label: t.movieId, value: t.watches })), 'watches started'));
  const slotNames = Object.keys(r.slots).filter((s) => r.slots[s].lists > 0);
  if (slotNames.length) charts.push(lorenz('lorenz', 'Exposure concentration (Lorenz curves; Gini = 2 × area between diagonal and curve)', slotNames.map((s) => ({ name: s, counts: r.slots[s].exposureCounts, catalogSize: r.catalog.movies }))));
  const tiers = r.movieGroups.popularityTier ?? [];
  if (tiers.length && r.slots.all?.lists) {
    charts.push(groupedBars('popularity-tiers', 'Exposure share against watch share by popularity tier', tiers.map((t) => t.group),
      [{ name: 'exposure share', values: tiers.map((t) => t.exposureShare) }, { name: 'watch share', values: tiers.map((t) => t.watchShare) }], 'share'));
  }
  if (r.userGroups.available) {
    for (const [dim, g] of Object.entries(r.userGroups.dimensions)) {
      if (!g.groups.length) continue;
      charts.push(groupedBars(`group-${dim}`, `Hit rate and list quality (MRR) by ${dim}`, g.groups.map((x) => x.group),
        [{ name: 'hit rate', values: g.groups.map((x) => x.hitRate) }, { name: 'MRR', values: g.groups.map((x) => x.mrr) }], 'per list'));
    }
  }
  const loops = r.loops as LoopReport | undefined;
  if (loops && loops.windows.length) {
    // A window cut short by the period's end is marked: its few seconds make a spike that the
    // amplification check leaves out (isShortWindow).
    const x = loops.windows.map((w) => (isShortWindow(w, loops.windowMs) ? `${w.label} (short)` : w.label));
    charts.push(lines('exposure-over-time', 'Exposure Gini and coverage per window', x, [
      { name: 'Gini', values: loops.windows.map((w) => w.gini) },
      { name: 'coverage', values: loops.windows.map((w) => w.coverage), yAxisIndex: 1 },
    ], ['Gini', 'coverage']));
    charts.push(lines('loop-signals', 'Loop signals per window', x, [
      { name: 'repeat-list share (stale)', values: loops.windows.map((w) => w.staleShare) },
      { name: 'new users\' first-watch Jaccard', values: loops.windows.map((w) => w.newUserJaccard) },
      { name: 'top-10 watch share', values: loops.windows.map((w) => w.topWatchShare) },
    ], ['share']));
  }
  return charts;
}

function slotRows(r: Report): (string | number)[][] {
  const rows: [string, (s: SlotFigures) => string | number][] = [
    ['lists served', (s) => s.lists],
    ['users', (s) => s.users],
    ['distinct movies', (s) => s.distinctMovies],
    ['Gini index of exposure', (s) => num(s.gini)],
    ['catalogue coverage', (s) => pct(s.coverage)],
    ['entropy of exposure (nats)', (s) => num(s.entropy, 2)],
    ['entropy / ln(catalogue)', (s) => num(s.entropyNormalised)],
    ['ARP (mean watchers of a shown movie)', (s) => num(s.arp, 1)],
    ['long-tail share (outside the top 20 %)', (s) => pct(s.longTailShare)],
    ['popularity of users\' own watches (GAP_p)', (s) => num(s.popularityLift?.gapProfile, 1)],
    ['popularity of their lists (GAP_r)', (s) => num(s.popularityLift?.gapRecommended, 1)],
    ['popularity lift ΔGAP', (s) => pct(s.popularityLift?.lift)],
    ['cold-start answers', (s) => pct(s.coldStartShare)],
    ['fallback answers', (s) => pct(s.fallbackShare)],
    ['hit rate (lists with known outcome)', (s) => `${pct(s.hitRate)} of ${s.countedLists}`],
    ['MRR', (s) => num(s.mrr)],
  ];
  const slots = Object.keys(r.slots);
  return rows.map(([name, f]) => [name, ...slots.map((s) => f(r.slots[s]))]);
}

export function renderHtml(r: Report, charts = reportCharts(r)): string {
  const slots = Object.keys(r.slots);
  const chart = (id: string) => {
    const c = charts.find((x) => x.id === id);
    return c ? `<figure class="chart" id="chart-${c.id}"><figcaption>${esc(c.title)}</figcaption>${c.svg}</figure>` : '';
  };
  const parts: string[] = [];
  parts.push(`<h1>What the recommender does to its users</h1>
<p>Period ${esc(r.period.since)} – ${esc(r.period.until)}${r.period.releaseId ? `, release ${esc(r.period.releaseId)}` : ''}; attribution window ${r.attributionWindowMs / 60_000} min;
catalogue ${r.catalog.movies} movies (short head: the ${r.catalog.shortHeadMovies} most watched); ${r.catalog.usersKnown} users known, ${r.catalog.usersWithMetadata} with metadata. Generated ${esc(r.generatedAt)}.</p>`);
  if (r.notes.length) parts.push(`<div class="notes"><h2>Missing data</h2><ul>${r.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul></div>`);
  parts.push(`<h2>Exposure, per answering slot and for the platform</h2>${table(['metric', ...slots], slotRows(r))}${chart('lorenz')}`);
  const f = r.watchesFollowingRecommendation;
  parts.push(`<h2>The seed's views</h2><p>${f.followed} of ${f.watches} watches started in the period (${pct(f.share)}) followed a list that held the movie within the attribution window.
Cold-start answers: ${pct(r.slots.all?.coldStartShare)}; fallback answers: ${pct(r.slots.all?.fallbackShare)}.</p>
${chart('top-recommended')}${chart('top-watched')}`);
  parts.push('<h2>Fairness across movie groups</h2><p>Ratio = exposure share / watch share: above 1 the recommender shows the group more than people choose it.</p>');
  for (const [name, rows] of Object.entries(r.movieGroups)) {
    parts.push(`<h3>${esc(name)}</h3>${rows.length ? table(['group', 'movies', 'exposure share', 'watch share', 'ratio'], rows.map((g) => [g.group, g.movies, pct(g.exposureShare), pct(g.watchShare), num(g.ratio, 2)])) : '<p class="note">no movie metadata for this grouping</p>'}`);
  }
  parts.push(chart('popularity-tiers'));
  parts.push('<h2>Fairness across user groups</h2>');
  if (!r.userGroups.available) parts.push(`<p class="note">${esc(r.userGroups.note ?? '')}</p>`);
  for (const [dim, g] of Object.entries(r.userGroups.dimensions)) {
    parts.push(`<h3>${esc(dim)}</h3>${table(['group', 'users', 'lists', 'hit rate', 'MRR', 'ARP'], g.groups.map((x) => [x.group, x.users, x.lists, pct(x.hitRate), num(x.mrr), num(x.arp, 1)]))}
<p>Spread of hit rate (groups with ≥ ${r.userGroups.minListsForSpread} lists of known outcome): ${g.hitRateSpread ? `${pct(g.hitRateSpread.spread)} (${esc(g.hitRateSpread.min)} lowest, ${esc(g.hitRateSpread.max)} highest; min/max ${num(g.hitRateSpread.ratio, 2)})` : '–'}</p>${chart(`group-${dim}`)}`);
  }
  const d = r.defaultRating;
  parts.push(`<h2>The default-rating bias</h2><p>${d.watches} watches in the period, ${d.rated} rated (${pct(d.unratedShare)} unrated); mean rating given ${num(d.meanRating, 2)}; ratings 1–5: ${d.ratingCounts.join(' / ')}.
Weights are on one like scale (about −1…1, 0 neutral). Bias on rated watches = what the rule would give the watch unrated − what its rating gives.</p>
${table(['spec', 'unrated watch counts as', 'mean weight of unrated', 'bias on rated', 'rated under-weighted', 'over-weighted'], d.models.map((m) => [m.spec, m.treatment, num(m.meanUnratedWeight), num(m.biasOnRated), pct(m.underRatedShare), pct(m.overRatedShare)]))}`);
  const loops = r.loops as LoopReport | undefined;
  if (loops) {
    parts.push(`<h2>Feedback loops (${loops.windows.length} windows of ${loops.windowMs / 60_000} min)</h2>`);
    parts.push(table(['loop', 'verdict', 'evidence'], loops.verdicts.map((v) => [v.loop, v.detected ? 'DETECTED' : 'not detected', v.evidence])));
    for (const w of shortWindows(loops)) {
      parts.push(`<p class="note">The window from ${esc(w.label)} lasts ${num((Date.parse(w.to) - Date.parse(w.from)) / 1000, 0)} s, less than half a window: it is marked (short) in the charts, and the amplification check leaves it out.</p>`);
    }
    parts.push(chart('exposure-over-time') + chart('loop-signals'));
  }
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Marquee report ${esc(r.period.since)} – ${esc(r.period.until)}</title>
<style>
body { font-family: 'DejaVu Sans', sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.notes { background: #fff6dd; border: 1px solid #e0c060; padding: 0 1em; }
.note { color: #8a5a00; }
figure.chart { margin: 1em 0; } figcaption { font-weight: bold; margin-bottom: 4px; }
</style></head><body>
${parts.join('\n')}
</body></html>
`;
}
