// Parse rate of parseLine on generated course lines: `npx tsx bench/parser.bench.ts [lines]`.
// The mix resembles the platform's stream: mostly watch minutes, some requests, few ratings.
import { parseLine } from '../lib/events/parser.ts';

const count = Number(process.argv[2] ?? 1_000_000);
let seed = 42;
const rnd = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x80000000;
};
const int = (n: number) => Math.floor(rnd() * n);
const words = ['the', 'shawshank', 'redemption', 'matrix', 'up', 'inception', 'dark', 'knight', 'city', 'of', 'god'];
const slug = () => `${words[int(words.length)]}+${words[int(words.length)]}+${1950 + int(75)}`;
const server = '17645-team12.isri.cmu.edu:8082';

function line(i: number): string {
  const ts = new Date(1735689600000 + i * 7).toISOString().slice(0, 23);
  const user = int(1_000_000);
  const r = rnd();
  if (r < 0.85) return `${ts},${user},GET /data/m/${slug()}/${int(180)}.mpg`;
  if (r < 0.9) return `${ts},${user},GET /rate/${slug()}=${1 + int(5)}`;
  if (r < 0.98) {
    const ids = Array.from({ length: 20 }, slug).join(', ');
    return `${ts},${user},recommendation request ${server}, status 200, result: ${ids}, ${int(600)} ms`;
  }
  if (r < 0.99) return `${ts},${user},recommendation request ${server}, status 0, result: java.net.ConnectException: Connection refused (Connection refused), 600 ms`;
  return `${ts},${user},GET /create_account`;
}

const lines = Array.from({ length: count }, (_, i) => line(i));
const bytes = lines.reduce((n, l) => n + l.length, 0);

function run(): { ms: number; ok: number } {
  let ok = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < lines.length; i++) if (parseLine(lines[i]).ok) ok++;
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, ok };
}

run(); // warm-up: let the JIT settle before measuring
const rounds = [run(), run(), run()];
const best = rounds.reduce((a, b) => (a.ms < b.ms ? a : b));
if (best.ok !== count) throw new Error(`expected all ${count} lines to parse, got ${best.ok}`);
const rate = count / (best.ms / 1000);
console.log(`parseLine: ${count} lines (${(bytes / 1e6).toFixed(1)} MB) in ${best.ms.toFixed(0)} ms (best of 3): ` +
  `${Math.round(rate).toLocaleString('en-US')} lines/s, ${(bytes / 1e6 / (best.ms / 1000)).toFixed(0)} MB/s`);
