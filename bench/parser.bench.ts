// Parse rate of parseLine on generated course lines, against a baseline measured in the same run:
// `npm run bench:parser -- [--lines N]`.
// The mix resembles the platform's stream: mostly watch minutes, some requests, few ratings.
// The baseline is the least any parser must do: split each line on commas and pick the kind and
// fields with one regular expression each, validating nothing (no dates, ranges or slugs). The
// ratio says what the checks and the typed events cost over that.
import { parseLine } from '../lib/events/parser.ts';
import { Rng } from '../lib/random.ts';
import { benchArgs } from '../testkit/args.ts';

const count = benchArgs('npm run bench:parser [-- --lines 1000000]', { lines: '1000000' }).number('lines', { min: 1, integer: true });

const rng = new Rng(42);
const words = ['the', 'shawshank', 'redemption', 'matrix', 'up', 'inception', 'dark', 'knight', 'city', 'of', 'god'];
const slug = () => `${rng.pick(words)}+${rng.pick(words)}+${rng.int(1950, 2024)}`;
const server = '17645-team12.isri.cmu.edu:8082';

function line(i: number): string {
  const ts = new Date(1735689600000 + i * 7).toISOString().slice(0, 23);
  const user = rng.int(0, 999_999);
  const r = rng.next();
  if (r < 0.85) return `${ts},${user},GET /data/m/${slug()}/${rng.int(0, 179)}.mpg`;
  if (r < 0.9) return `${ts},${user},GET /rate/${slug()}=${rng.int(1, 5)}`;
  if (r < 0.98) {
    const ids = Array.from({ length: 20 }, slug).join(', ');
    return `${ts},${user},recommendation request ${server}, status 200, result: ${ids}, ${rng.int(0, 599)} ms`;
  }
  if (r < 0.99) return `${ts},${user},recommendation request ${server}, status 0, result: java.net.ConnectException: Connection refused (Connection refused), 600 ms`;
  return `${ts},${user},GET /create_account`;
}

const lines = Array.from({ length: count }, (_, i) => line(i));
const bytes = lines.reduce((n, l) => n + l.length, 0);

const WATCH = /^GET \/data\/m\/([^/]+)\/(\d+)\.mpg$/;
const RATE = /^GET \/rate\/([^=]+)=(\d)$/;
const REC = /^recommendation request ([^,]+), status (\d+), result: (.*), (\d+) ms$/;

/** Split-and-regex tokenizer: same fields out, no validation. */
function naive(l: string): boolean {
  const parts = l.split(',');
  if (parts.length < 3) return false;
  const time = Date.parse(`${parts[0]}Z`);
  const user = Number(parts[1]);
  const rest = parts.length === 3 ? parts[2] : parts.slice(2).join(',');
  let m: RegExpExecArray | null;
  if ((m = WATCH.exec(rest))) return !Number.isNaN(time) && user >= 0 && m[1].length > 0 && Number(m[2]) >= 0;
  if ((m = RATE.exec(rest))) return !Number.isNaN(time) && user >= 0 && Number(m[2]) >= 1;
  if ((m = REC.exec(rest))) return !Number.isNaN(time) && user >= 0 && (m[2] !== '200' || m[3].split(', ').length > 0) && Number(m[4]) >= 0;
  return rest === 'GET /create_account';
}

const parsers = { parseLine: (l: string) => parseLine(l).ok, 'split+regex baseline': naive };

function run(parse: (l: string) => boolean): { ms: number; ok: number } {
  let ok = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < lines.length; i++) if (parse(lines[i])) ok++;
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, ok };
}

const best: Record<string, number> = {};
for (const [name, parse] of Object.entries(parsers)) {
  run(parse); // warm-up: let the JIT settle before measuring
  const rounds = [run(parse), run(parse), run(parse)];
  const fastest = rounds.reduce((a, b) => (a.ms < b.ms ? a : b));
  if (fastest.ok !== count) throw new Error(`${name}: expected all ${count} lines to parse, got ${fastest.ok}`);
  best[name] = fastest.ms;
  const rate = count / (fastest.ms / 1000);
  console.log(`${name}: ${count} lines (${(bytes / 1e6).toFixed(1)} MB) in ${fastest.ms.toFixed(0)} ms (best of 3): ` +
    `${Math.round(rate).toLocaleString('en-US')} lines/s, ${(bytes / 1e6 / (fastest.ms / 1000)).toFixed(0)} MB/s`);
}
console.log(`ratio parseLine / baseline (lines/s): ${(best['split+regex baseline'] / best.parseLine).toFixed(2)}`);
