/** `marquee import movielens <dir>`: see lib/movielens/import.ts. */
import { parseArgs } from 'node:util';
import { loadConfig } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { ensureTopic } from '../lib/kafka.ts';
import { importMovieLens } from '../lib/movielens/import.ts';
import { readMovieLens } from '../lib/movielens/read.ts';

export const movielensUsage = 'import movielens <dir> [--topic T] [--minutes N] [--user-offset N] [--no-metadata]';
export const movielensSummary = 'produce a MovieLens download (GroupLens 100K or 1M, or RecBole atomic files) (ratings as watch sessions + rating lines, in time order) to Kafka, and its movie/user metadata to Postgres';

/** Takes the arguments after `import` (`movielens <dir> ...`) or after `import movielens`. */
export async function movielensCommand(args: string[]): Promise<number> {
  const rest = args[0] === 'movielens' ? args.slice(1) : args;
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: rest, allowPositionals: true, strict: true,
      options: { topic: { type: 'string' }, minutes: { type: 'string' }, 'user-offset': { type: 'string' }, 'no-metadata': { type: 'boolean' } },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\nusage: marquee ${movielensUsage}`);
    return 2;
  }
  const int = (name: string, min: number, max: number): number | undefined => {
    const v = values[name];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max} (got ${String(v)})`);
    return n;
  };
  if (positionals.length !== 1) {
    console.error(`expected one directory\nusage: marquee ${movielensUsage}`);
    return 2;
  }
  const cfg = loadConfig();
  const topic = typeof values.topic === 'string' ? values.topic : cfg.kafka.topic;
  const minutes = int('minutes', 1, 600);
  const userOffset = int('user-offset', 0, 1_000_000_000);
  // Read (and so check) the files before a topic or a connection is made for them.
  const data = readMovieLens(positionals[0]);
  await ensureTopic(cfg, topic);
  const pool = values['no-metadata'] ? null : createPool(cfg, { max: 2, applicationName: 'marquee-import' });
  let last = 0;
  try {
    const r = await importMovieLens(cfg, pool, positionals[0], {
      topic, minutes, userOffset, data,
      onProgress: ({ produced, total }) => {
        if (Date.now() - last < 1000 && produced < total) return;
        last = Date.now();
        console.log(`  … ${produced} of ${total} lines (${Math.round((100 * produced) / total)}%)`);
      },
    });
    console.log(`imported MovieLens ${r.layout}: ${r.ratings} ratings by ${r.users} users of ${r.movies} movies (${r.firstRating} … ${r.lastRating}) as ${r.lines} lines to topic ${topic} in ${(r.ms / 1000).toFixed(1)} s`);
    return 0;
  } finally {
    await pool?.end();
  }
}
