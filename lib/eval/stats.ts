/**
 * The statistics the judge uses, small enough to check by hand: the normal distribution, the
 * Wilson interval for one proportion, the Agresti–Caffo interval and a pooled z-test for the
 * difference of two, a chi-square goodness-of-fit for the sample ratio, and percentiles.
 */

/** erfc(x) to about 1e-7 (Numerical Recipes' Chebyshev fit), enough for p-values down to 1e-6. */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

/** P(Z ≤ z) for a standard normal Z. */
export function normalCdf(z: number): number {
  if (z === Infinity) return 1;
  if (z === -Infinity) return 0;
  return 0.5 * erfc(-z / Math.SQRT2);
}

/** The z with P(Z ≤ z) = p (Acklam's rational approximation, relative error below 1.2e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    throw new Error(`normalQuantile: p must be within 0..1, got ${p}`);
  }
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

export interface Interval { low: number; high: number }

/** Wilson score interval for x successes in n trials at two-sided confidence `level`; null when n = 0. */
export function wilson(x: number, n: number, level = 0.95): Interval | null {
  if (n <= 0) return null;
  const z = normalQuantile(1 - (1 - level) / 2);
  const p = x / n;
  const z2n = (z * z) / n;
  const centre = (p + z2n / 2) / (1 + z2n);
  const half = (z / (1 + z2n)) * Math.sqrt((p * (1 - p)) / n + z2n / (4 * n));
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

export interface DifferenceTest {
  /** Observed p_b − p_a. */
  diff: number;
  /** Agresti–Caffo: one success and one failure added to each arm, which keeps the interval honest at 0 % or 100 %. */
  adjustedDiff: number;
  se: number;
  /** One-sided bounds of p_b − p_a at `confidence` each (so low..high is a 1 − 2(1 − confidence) two-sided interval). */
  low: number;
  high: number;
  /** Pooled two-proportion z statistic for p_b ≠ p_a and its two-sided p-value. */
  z: number;
  pValue: number;
  /** One-sided p-value of H0: p_b − p_a ≤ −margin (small means B is non-inferior). */
  nonInferiorityP: number;
}

/**
 * Compares B (nightly) with A (main) on xa/na and xb/nb per-user successes. Null when an arm is empty.
 */
export function compareProportions(xa: number, na: number, xb: number, nb: number, confidence: number, margin: number): DifferenceTest | null {
  if (na <= 0 || nb <= 0) return null;
  const pa = xa / na;
  const pb = xb / nb;
  const ta = (xa + 1) / (na + 2);
  const tb = (xb + 1) / (nb + 2);
  const adjustedDiff = tb - ta;
  const se = Math.sqrt((ta * (1 - ta)) / (na + 2) + (tb * (1 - tb)) / (nb + 2));
  const zc = normalQuantile(confidence);
  const pooled = (xa + xb) / (na + nb);
  const sePooled = Math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb));
  const z = sePooled > 0 ? (pb - pa) / sePooled : 0;
  return {
    diff: pb - pa,
    adjustedDiff,
    se,
    low: adjustedDiff - zc * se,
    high: adjustedDiff + zc * se,
    z,
    pValue: 2 * (1 - normalCdf(Math.abs(z))),
    nonInferiorityP: 1 - normalCdf((adjustedDiff + margin) / se),
  };
}

export interface SrmTest {
  observed: { main: number; nightly: number };
  expected: { main: number; nightly: number };
  chiSquare: number;
  /** P(χ²₁ ≥ chiSquare): for one degree of freedom this is erfc(√(χ²/2)). */
  pValue: number;
}

/** Chi-square goodness of fit of the users per slot against the configured nightly percent. Null without users. */
export function sampleRatioTest(main: number, nightly: number, nightlyPercent: number): SrmTest | null {
  const total = main + nightly;
  if (total <= 0) return null;
  const p = nightlyPercent / 100;
  const expected = { main: total * (1 - p), nightly: total * p };
  // A 0 % or 100 % split expects nothing in one slot: any user there is a mismatch.
  if (expected.main === 0 || expected.nightly === 0) {
    const off = expected.main === 0 ? main : nightly;
    return { observed: { main, nightly }, expected, chiSquare: off > 0 ? Infinity : 0, pValue: off > 0 ? 0 : 1 };
  }
  const chiSquare = (main - expected.main) ** 2 / expected.main + (nightly - expected.nightly) ** 2 / expected.nightly;
  return { observed: { main, nightly }, expected, chiSquare, pValue: erfc(Math.sqrt(chiSquare / 2)) };
}

/** Nearest-rank percentile (q in 0..100) of unsorted values; null when empty. */
export function percentile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.max(1, Math.ceil((q / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}
