/**
 * What a recommender does to the catalogue and to its users, each figure defined once here (the
 * report, the release mail and the dashboard all call these). Pure functions over counts: the
 * database work that produces the counts lives in lib/report/data.ts.
 *
 * Notation: the catalogue has n movies; c_i is how often movie i was shown (one count per
 * appearance in a served list), C = Σ c_i; pop(i) is the movie's popularity, the number of users
 * who watched it.
 */

/**
 * Gini index of exposure over the whole catalogue (movies never shown count as c_i = 0):
 *   G = Σ_{k=1..n} (2k − n − 1) · c_(k) / (n · C), with c_(1) ≤ … ≤ c_(n) sorted ascending.
 * 0 when every movie is shown equally often, (n − 1)/n when one movie gets every exposure.
 * Reference: RecBole `GiniIndex` (recbole/evaluator/metrics.py, get_gini), after Gunawardana &
 * Shani, "Evaluating Recommender Systems" (2011).
 */
export function giniIndex(counts: Iterable<number>, catalogSize?: number): number | null {
  const shown = [...counts].filter((c) => c > 0).sort((a, b) => a - b);
  const n = Math.max(catalogSize ?? shown.length, shown.length);
  const total = shown.reduce((s, c) => s + c, 0);
  if (n === 0 || total === 0) return null;
  // The n − |shown| zeros take ranks 1..(n − |shown|) and add nothing to the sum.
  const offset = n - shown.length;
  let sum = 0;
  for (let j = 0; j < shown.length; j++) sum += (2 * (offset + j + 1) - n - 1) * shown[j];
  return sum / (n * total);
}

/**
 * Catalogue coverage: distinct movies shown at least once / n.
 * Reference: RecBole `ItemCoverage`; Microsoft Recommenders `catalog_coverage`.
 */
export function catalogCoverage(distinctShown: number, catalogSize: number): number | null {
  return catalogSize > 0 ? Math.min(1, distinctShown / catalogSize) : null;
}

/**
 * Shannon entropy of the exposure distribution, in nats: H = −Σ p_i ln p_i with p_i = c_i / C.
 * `normalised` divides by ln n (1 = perfectly even over the whole catalogue).
 * Reference: RecBole `ShannonEntropy`; Microsoft Recommenders `distributional_coverage` (which
 * uses log2; divide ours by ln 2 to compare).
 */
export function exposureEntropy(counts: Iterable<number>, catalogSize?: number): { entropy: number; normalised: number | null } | null {
  const shown = [...counts].filter((c) => c > 0);
  const total = shown.reduce((s, c) => s + c, 0);
  if (total === 0) return null;
  let h = 0;
  for (const c of shown) { const p = c / total; h -= p * Math.log(p); }
  const n = Math.max(catalogSize ?? shown.length, shown.length);
  return { entropy: h, normalised: n > 1 ? h / Math.log(n) : null };
}

/**
 * Average recommendation popularity: the mean over served lists L of (Σ_{i∈L} pop(i)) / |L|.
 * Reference: Abdollahpouri, Burke & Mobasher 2019 (ARP); RecBole `AveragePopularity`.
 */
export function averageRecommendationPopularity(lists: Iterable<readonly string[]>, pop: ReadonlyMap<string, number>): number | null {
  let sum = 0, n = 0;
  for (const l of lists) {
    if (l.length === 0) continue;
    sum += meanPopularity(l, pop)!;
    n++;
  }
  return n > 0 ? sum / n : null;
}

/** Mean popularity of a set of movies (0 for a movie nobody watched); null for an empty set. */
export function meanPopularity(ids: readonly string[], pop: ReadonlyMap<string, number>): number | null {
  if (ids.length === 0) return null;
  let s = 0;
  for (const id of ids) s += pop.get(id) ?? 0;
  return s / ids.length;
}

/**
 * The short head: the most popular movies, ⌈headShare · n⌉ of them (ties broken by id so the set
 * is stable); everything else is the long tail. Abdollahpouri et al. 2019 use the top 20 %.
 */
export function shortHead(pop: ReadonlyMap<string, number>, catalog: readonly string[], headShare = 0.2): Set<string> {
  const k = Math.ceil(headShare * catalog.length);
  const sorted = [...catalog].sort((a, b) => (pop.get(b) ?? 0) - (pop.get(a) ?? 0) || (a < b ? -1 : a > b ? 1 : 0));
  return new Set(sorted.slice(0, k));
}

/**
 * Long-tail share: the mean over served lists of the fraction of the list's movies outside the
 * short head. Reference: RecBole `TailPercentage`; Abdollahpouri et al. 2019 ("long-tail coverage").
 */
export function longTailShare(lists: Iterable<readonly string[]>, head: ReadonlySet<string>): number | null {
  let sum = 0, n = 0;
  for (const l of lists) {
    if (l.length === 0) continue;
    let tail = 0;
    for (const id of l) if (!head.has(id)) tail++;
    sum += tail / l.length;
    n++;
  }
  return n > 0 ? sum / n : null;
}

/**
 * Popularity lift (ΔGAP): how much more popular the recommendations are than what the users
 * themselves watched before. Over the users u with both a history P_u and served lists R_u:
 *   GAP_p = mean_u mean_{i∈P_u} pop(i),  GAP_r = mean_u mean_{i∈R_u} pop(i),  lift = (GAP_r − GAP_p) / GAP_p.
 * Reference: Abdollahpouri, Mansoury, Burke & Mobasher 2020, "The Unfairness of Popularity Bias
 * in Recommendation" (ΔGAP).
 */
export function popularityLift(users: Iterable<{ profile: readonly string[]; recommended: readonly string[] }>, pop: ReadonlyMap<string, number>): { gapProfile: number; gapRecommended: number; lift: number | null; users: number } | null {
  let p = 0, r = 0, n = 0;
  for (const u of users) {
    const mp = meanPopularity(u.profile, pop);
    const mr = meanPopularity(u.recommended, pop);
    if (mp === null || mr === null) continue;
    p += mp; r += mr; n++;
  }
  if (n === 0) return null;
  const gapProfile = p / n, gapRecommended = r / n;
  return { gapProfile, gapRecommended, lift: gapProfile > 0 ? (gapRecommended - gapProfile) / gapProfile : null, users: n };
}

/**
 * The spread of a per-group figure: max − min over the groups that have a value, and min / max
 * (1 = every group alike). Reference: the "disparity" of Ekstrand et al. 2018, "All the cool kids,
 * how do they fit in?" (per-demographic utility compared by its range).
 */
export function groupSpread(values: Iterable<{ group: string; value: number | null }>): { spread: number; ratio: number | null; min: string; max: string } | null {
  let lo: { group: string; value: number } | null = null, hi: { group: string; value: number } | null = null;
  for (const v of values) {
    if (v.value === null || !Number.isFinite(v.value)) continue;
    if (!lo || v.value < lo.value) lo = { group: v.group, value: v.value };
    if (!hi || v.value > hi.value) hi = { group: v.group, value: v.value };
  }
  if (!lo || !hi) return null;
  return { spread: hi.value - lo.value, ratio: hi.value > 0 ? lo.value / hi.value : null, min: lo.group, max: hi.group };
}

/**
 * Exposure share against watch share for a group of movies: (exposures of the group / all
 * exposures) / (watches of the group / all watches). Above 1 the recommender shows the group more
 * than people choose it. Reference: Mansoury et al. 2020 (miscalibration of exposure vs
 * interaction shares); Steck 2018, "Calibrated Recommendations".
 */
export function exposureToWatchRatio(groupExposures: number, totalExposures: number, groupWatches: number, totalWatches: number): number | null {
  if (totalExposures === 0 || totalWatches === 0 || groupWatches === 0) return null;
  return (groupExposures / totalExposures) / (groupWatches / totalWatches);
}

/** Jaccard similarity |A ∩ B| / |A ∪ B| (1 for two empty sets, by convention they are alike). */
export function jaccard(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 && b.size === 0) return 1;
  let inter = 0;
  for (const x of a) if (b.has(x)) inter++;
  return inter / (a.size + b.size - inter);
}

/**
 * Mean pairwise Jaccard overlap of a group of users' sets (e.g. new users' first watches):
 * 1 = identical histories. Reference: Chaney, Stewart & Engelhardt 2018, "How Algorithmic
 * Confounding in Recommendation Systems Increases Homogeneity" (they use the same measure).
 * With more than `maxPairs` pairs, an evenly spaced sample of the pairs is used (deterministic).
 */
export function meanPairwiseJaccard(sets: readonly ReadonlySet<string>[], maxPairs = 20_000): number | null {
  const m = sets.length;
  const pairs = (m * (m - 1)) / 2;
  if (pairs === 0) return null;
  const step = Math.max(1, Math.floor(pairs / maxPairs));
  let sum = 0, n = 0, k = 0;
  for (let i = 0; i < m; i++) {
    for (let j = i + 1; j < m; j++, k++) {
      if (k % step !== 0) continue;
      sum += jaccard(sets[i], sets[j]);
      n++;
    }
  }
  return sum / n;
}

/** Pearson correlation of two equally long series; null when either is constant or too short. */
export function pearson(x: readonly number[], y: readonly number[]): number | null {
  const n = Math.min(x.length, y.length);
  if (n < 2) return null;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
  mx /= n; my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) { const dx = x[i] - mx, dy = y[i] - my; sxy += dx * dy; sxx += dx * dx; syy += dy * dy; }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
}
