/**
 * The judge's error rates, measured: seeded simulated A/B comparisons on the metric layer (users,
 * exposures and the watches they earn, through the same metric and judge code as real data), each
 * slot at the judge's minimum sample size. Nightly is either worse than main by the
 * non-inferiority margin (promoting it is wrong) or better by twice the margin (promoting it is
 * right). The baseline, measured on the same runs, is the seed's rule: promote when nightly's
 * observed hit rate is at least main's.
 *
 *   npm run bench:judge [-- --runs 200]
 */
import { DEFAULT_EVAL_SETTINGS } from '../lib/eval/settings.ts';
import { errorRateStudy } from '../lib/eval/simulate.ts';
import { pct, textTable } from '../lib/eval/table.ts';
import { benchArgs } from '../testkit/args.ts';

const args = benchArgs('npm run bench:judge [-- --runs 200 --seed 1]', { runs: '200', seed: '1' });
const runs = args.number('runs', { min: 1, integer: true });
if (runs > 5000) throw new Error(`--runs must be an integer from 1 to 5000 (got ${runs})`);

const s = DEFAULT_EVAL_SETTINGS;
const baseRates = [0.1, 0.3, 0.5];
console.log(`judge error-rate study: ${runs} seeded comparisons per row, ${s.judge.minUsersPerSlot} users per slot (the minimum), ` +
  `margin ${s.judge.nonInferiorityMargin}, confidence ${s.judge.confidence}, per-user outcome "${s.userOutcome}", 1–3 exposures per user`);
const started = performance.now();
const rows = errorRateStudy(s, { runs, baseRates, seed: args.number('seed', { integer: true }) });
const seconds = (performance.now() - started) / 1000;

console.log(textTable(
  ['main hit rate', 'nightly', 'scenario', 'runs', 'Successful', 'Failed', 'Inconclusive', 'promoted (judge)', 'promoted (seed rule)'],
  rows.map((r) => [pct(r.baseRate, 0), pct(r.nightlyRate, 0), r.scenario, String(r.runs), String(r.successful), String(r.failed), String(r.inconclusive), pct(r.promoted), pct(r.naivePromoted)]),
));

const worse = rows.filter((r) => r.scenario === 'worse by the margin');
const better = rows.filter((r) => r.scenario === 'better by twice the margin');
const wrong = Math.max(...worse.map((r) => r.promoted));
const right = Math.min(...better.map((r) => r.promoted));
const naiveWrong = Math.max(...worse.map((r) => r.naivePromoted));
console.log(`\nwrong promotions (nightly worse by the margin): at most ${pct(wrong)} (target ≤ 5%) — seed rule ${pct(naiveWrong)}, ` +
  `ratio judge/seed ${naiveWrong > 0 ? (wrong / naiveWrong).toFixed(3) : '–'}`);
console.log(`correct promotions (nightly better by twice the margin): at least ${pct(right)} (target ≥ 80%)`);
console.log(`${rows.length * runs} comparisons in ${seconds.toFixed(1)} s (${((1000 * seconds) / (rows.length * runs)).toFixed(1)} ms each)`);
if (wrong > 0.05 || right < 0.8) {
  console.log('TARGETS MISSED');
  process.exitCode = 1;
}
