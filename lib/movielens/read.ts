/**
 * Reading a MovieLens download in one of three layouts:
 * - GroupLens 100K (`ml-100k/`): u.data `user \t movie \t rating \t unix time`; u.item `id|title|
 *   release date|video date|IMDb URL|19 genre flags`; u.user `id|age|gender|occupation|zip`. Latin-1.
 * - GroupLens 1M (`ml-1m/`): ratings.dat `user::movie::rating::unix time`; movies.dat
 *   `id::title::genres (a|b|c)`; users.dat `id::gender::age code::occupation code::zip`. Latin-1.
 * - RecBole atomic files (`<name>.inter`, `.item`, `.user`, as the recbole wheel ships ml-100k):
 *   tab-separated, UTF-8, a typed header first (`user_id:token\titem_id:token\trating:float\t
 *   timestamp:float`); columns are found by name, so their order is the header's business.
 * Titles put articles last ("Shawshank Redemption, The (1994)"; RecBole keeps the year in its own
 * column); the slug is made from "The Shawshank Redemption" and 1994, which is the course's id for
 * that movie. A line that cannot be read is an error naming the file and line: a download that
 * is garbled is better refused than imported in part.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeUniqueSlug } from '../events/slug.ts';

export type Layout = '100k' | '1m' | 'recbole';

export interface MlMovie {
  /** MovieLens' numeric id. */
  mlId: number;
  /** The course slug (unique within the import). */
  slug: string;
  title: string;
  year: number | null;
  /** Lower-case MovieLens genre names, e.g. "sci-fi", "children's". */
  genres: string[];
}

export interface MlUser {
  id: number;
  age: number | null;
  gender: string | null;
  occupation: string | null;
}

export interface MlRating {
  userId: number;
  mlMovieId: number;
  rating: 1 | 2 | 3 | 4 | 5;
  /** Epoch milliseconds. */
  atMs: number;
}

export interface MovieLensData {
  layout: Layout;
  movies: Map<number, MlMovie>;
  users: Map<number, MlUser>;
  /** Sorted by time, then user, then movie (a stable order for equal times). */
  ratings: MlRating[];
  /** The files read, by kind (users is null when the download has no user file). */
  files: { movies: string; users: string | null; ratings: string };
}

/** A file that is missing or holds a line that cannot be read; the message names the file (and line). */
export class MovieLensFileError extends Error {
  constructor(readonly file: string, readonly line: number | null, reason: string) {
    super(line === null ? `${file}: ${reason}` : `${file}:${line}: ${reason}`);
    this.name = 'MovieLensFileError';
  }
}

export const GENRES_100K = [
  'unknown', 'action', 'adventure', 'animation', "children's", 'comedy', 'crime', 'documentary', 'drama', 'fantasy',
  'film-noir', 'horror', 'musical', 'mystery', 'romance', 'sci-fi', 'thriller', 'war', 'western',
];

/** The 1M layout's occupation codes. */
export const OCCUPATIONS_1M = [
  'other', 'academic/educator', 'artist', 'clerical/admin', 'college/grad student', 'customer service', 'doctor/health care',
  'executive/managerial', 'farmer', 'homemaker', 'K-12 student', 'lawyer', 'programmer', 'retired', 'sales/marketing',
  'scientist', 'self-employed', 'technician/engineer', 'tradesman/craftsman', 'unemployed', 'writer',
];

const ARTICLES = ['The', 'A', 'An', 'Les', 'La', 'Le', "L'", 'Il', 'Das', 'Der', 'Die', 'El', 'Los', 'Las', 'Det', 'Den'];
const ARTICLE_RE = new RegExp(`^(.*?), (${ARTICLES.map((a) => a.replace("'", "\\'")).join('|')})(\\s*\\(.*\\))?$`);

/** "Shawshank Redemption, The (1994)" → { title: "The Shawshank Redemption", year: 1994 }. */
export function parseTitle(raw: string, fallbackYear: number | null = null): { title: string; year: number | null } {
  let t = raw.trim();
  let year = fallbackYear;
  const m = /\s*\((\d{4})\)\s*$/.exec(t);
  if (m) {
    year = Number(m[1]);
    t = t.slice(0, m.index).trim();
  }
  const a = ARTICLE_RE.exec(t);
  if (a) {
    const article = a[2];
    t = `${article}${article.endsWith("'") ? '' : ' '}${a[1]}${a[3] ?? ''}`;
  }
  return { title: t || raw.trim(), year };
}

function rating(v: string): 1 | 2 | 3 | 4 | 5 | null {
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 && n <= 5 ? (n as 1 | 2 | 3 | 4 | 5) : null;
}

const decoders = { latin1: new TextDecoder('latin1'), 'utf-8': new TextDecoder('utf-8') };

const int = (v: string | undefined): number | null => {
  const n = Number(v);
  return v !== undefined && v.trim() !== '' && Number.isInteger(n) && n >= 0 ? n : null;
};

type Kind = 'movies' | 'users' | 'ratings';
type MovieFields = { id: number; title: string; year: number | null; genres: string[] };

/**
 * A layout as data: where it keeps each kind of record, how fields are separated, how a movie and
 * a user line read, and (typed-header layouts) the columns each file must declare. Readers get the
 * fields in the order of `columns` when there is a header, else in the file's order.
 */
interface LayoutDef {
  /** The file name of each kind inside `dir`, or null when `dir` is not in this layout. */
  files(dir: string): Record<Kind, string> | null;
  encoding: keyof typeof decoders;
  sep: Record<Kind, string>;
  columns?: Record<Kind, string[]>;
  movie(f: string[]): MovieFields | null;
  user(f: string[]): MlUser | null;
  expected: Record<Kind, string>;
}

const fixedFiles = (files: Record<Kind, string>) => (dir: string) =>
  existsSync(path.join(dir, files.ratings)) || existsSync(path.join(dir, files.movies)) ? files : null;

const LAYOUTS: Record<Layout, LayoutDef> = {
  '100k': {
    files: fixedFiles({ movies: 'u.item', users: 'u.user', ratings: 'u.data' }),
    encoding: 'latin1',
    sep: { movies: '|', users: '|', ratings: '\t' },
    movie(f) {
      const id = int(f[0]);
      if (f.length < 5 + GENRES_100K.length || id === null) return null;
      const flags = f.slice(5, 5 + GENRES_100K.length);
      if (flags.some((x) => x !== '0' && x !== '1')) return null;
      const released = /(\d{4})$/.exec(f[2] ?? '');
      return { id, title: f[1], year: released ? Number(released[1]) : null, genres: GENRES_100K.filter((g, k) => flags[k] === '1' && g !== 'unknown') };
    },
    user(f) {
      const id = int(f[0]);
      if (f.length < 4 || id === null) return null;
      return { id, age: Number(f[1]) || null, gender: f[2] || null, occupation: f[3] || null };
    },
    expected: {
      movies: 'expected id|title|release date|video date|url|19 genre flags 0/1',
      users: 'expected id|age|gender|occupation|zip',
      ratings: 'expected user \\t movie \\t rating 1-5 \\t unix time',
    },
  },
  '1m': {
    files: fixedFiles({ movies: 'movies.dat', users: 'users.dat', ratings: 'ratings.dat' }),
    encoding: 'latin1',
    sep: { movies: '::', users: '::', ratings: '::' },
    movie(f) {
      const id = int(f[0]);
      if (f.length < 3 || id === null) return null;
      return { id, title: f[1], year: null, genres: f[2].split('|').map((g) => g.trim().toLowerCase()).filter((g) => g && g !== '(no genres listed)') };
    },
    user(f) {
      const id = int(f[0]);
      if (f.length < 4 || id === null) return null;
      return { id, gender: f[1] || null, age: Number(f[2]) || null, occupation: OCCUPATIONS_1M[Number(f[3])] ?? null };
    },
    expected: {
      movies: 'expected id::title::genres',
      users: 'expected id::gender::age::occupation::zip',
      ratings: 'expected user::movie::rating 1-5::unix time',
    },
  },
  recbole: {
    files(dir) {
      if (!existsSync(dir)) return null;
      const inter = readdirSync(dir).filter((n) => n.endsWith('.inter'));
      if (inter.length > 1) throw new MovieLensFileError(dir, null, `holds several RecBole interaction files (${inter.join(', ')}); expected one`);
      if (inter.length === 0) return null;
      const base = inter[0].slice(0, -'.inter'.length);
      return { movies: `${base}.item`, users: `${base}.user`, ratings: `${base}.inter` };
    },
    encoding: 'utf-8',
    sep: { movies: '\t', users: '\t', ratings: '\t' },
    columns: {
      movies: ['item_id:token', 'movie_title:token_seq', 'release_year:token', 'class:token_seq'],
      users: ['user_id:token', 'age:token', 'gender:token', 'occupation:token'],
      ratings: ['user_id:token', 'item_id:token', 'rating:float', 'timestamp:float'],
    },
    movie(f) {
      const id = int(f[0]);
      if (id === null || f[1].trim() === '') return null;
      // The wheel writes "unkonwn" for movie 267's year and "V" for 1412's (whose title has it).
      const year = /^\d{4}$/.test(f[2]) ? Number(f[2]) : null;
      return { id, title: f[1], year, genres: f[3].split(' ').map((g) => g.trim().toLowerCase()).filter((g) => g && g !== 'unknown') };
    },
    user(f) {
      const id = int(f[0]);
      if (id === null) return null;
      return { id, age: Number(f[1]) || null, gender: f[2] || null, occupation: f[3] || null };
    },
    expected: {
      movies: 'expected item_id, movie_title, release_year, class (tab-separated, as the header says)',
      users: 'expected user_id, age, gender, occupation (tab-separated, as the header says)',
      ratings: 'expected user_id, item_id, rating 1-5, unix timestamp (tab-separated, as the header says)',
    },
  },
};

export function detectLayout(dir: string): Layout {
  for (const layout of Object.keys(LAYOUTS) as Layout[]) if (LAYOUTS[layout].files(dir)) return layout;
  throw new Error(`${dir} holds no MovieLens download: neither the 100K layout (u.data, u.item, u.user), the 1M layout (ratings.dat, movies.dat, users.dat) nor RecBole's (<name>.inter, <name>.item, <name>.user)`);
}

/** Which field holds each wanted column, from a typed header line; a missing column is an error naming it. */
function headerIndex(file: string, header: string, sep: string, wanted: string[]): number[] {
  const have = header.split(sep).map((h) => h.trim());
  return wanted.map((col) => {
    const i = have.indexOf(col);
    if (i < 0) throw new MovieLensFileError(file, 1, `the header lacks the column ${col} (it has ${have.join(', ') || 'nothing'}; needed: ${wanted.join(', ')})`);
    return i;
  });
}

function readRating(f: string[]): Omit<MlRating, 'atMs'> & { at: number } | null {
  const r = rating(f[2]);
  const userId = int(f[0]);
  const mlMovieId = int(f[1]);
  const at = Number(f[3]);
  if (f.length < 4 || r === null || userId === null || mlMovieId === null || f[3].trim() === '' || !Number.isFinite(at)) return null;
  return { userId, mlMovieId, rating: r, at };
}

export function readMovieLens(dir: string): MovieLensData {
  const layout = detectLayout(dir);
  const L = LAYOUTS[layout];
  const names = L.files(dir)!;
  const file = (kind: Kind) => path.join(dir, names[kind]);
  for (const kind of ['movies', 'ratings'] as const) {
    if (!existsSync(file(kind))) throw new MovieLensFileError(file(kind), null, `missing (the ${layout} layout needs ${names.movies} and ${names.ratings}; ${names.users} is optional)`);
  }
  const movies = new Map<number, MlMovie>();
  const users = new Map<number, MlUser>();
  const ratings: MlRating[] = [];
  const taken = new Set<string>();
  /** Calls read with the fields of each non-blank record line; a line it cannot read (false) is an error. */
  const each = (kind: Kind, read: (f: string[], line: number) => boolean) => {
    const name = file(kind);
    const lines = decoders[L.encoding].decode(readFileSync(name)).split(/\r?\n/);
    const sep = L.sep[kind];
    const columns = L.columns?.[kind];
    let first = 0;
    let index: number[] | null = null;
    let width = 0;
    if (columns) {
      if (lines.length === 0 || lines[0].trim() === '') throw new MovieLensFileError(name, 1, `no header line (needed: ${columns.join(', ')})`);
      index = headerIndex(name, lines[0], sep, columns);
      width = lines[0].split(sep).length;
      first = 1;
    }
    for (let i = first; i < lines.length; i++) {
      const l = lines[i];
      if (l.trim() === '') continue;
      const raw = l.split(sep);
      if (index && raw.length !== width) throw new MovieLensFileError(name, i + 1, `${raw.length} fields where the header has ${width}; ${L.expected[kind]}`);
      const f = index ? index.map((k) => raw[k]) : raw;
      if (!read(f, i + 1)) throw new MovieLensFileError(name, i + 1, `cannot read "${l.length > 80 ? `${l.slice(0, 80)}…` : l}": ${L.expected[kind]}`);
    }
  };

  each('movies', (f, line) => {
    const m = L.movie(f);
    if (m === null) return false;
    if (movies.has(m.id)) throw new MovieLensFileError(file('movies'), line, `movie ${m.id} appears twice`);
    const { title, year } = parseTitle(m.title, m.year);
    movies.set(m.id, { mlId: m.id, slug: makeUniqueSlug(title, year, taken), title, year, genres: m.genres });
    return true;
  });
  const hasUsers = existsSync(file('users'));
  if (hasUsers) {
    each('users', (f) => {
      const u = L.user(f);
      if (u !== null) users.set(u.id, u);
      return u !== null;
    });
  }
  each('ratings', (f, line) => {
    const r = readRating(f);
    if (r === null) return false;
    if (!movies.has(r.mlMovieId)) throw new MovieLensFileError(file('ratings'), line, `movie ${r.mlMovieId} is not in ${names.movies}`);
    ratings.push({ userId: r.userId, mlMovieId: r.mlMovieId, rating: r.rating, atMs: Math.round(r.at * 1000) });
    return true;
  });
  ratings.sort((a, b) => a.atMs - b.atMs || a.userId - b.userId || a.mlMovieId - b.mlMovieId);
  return { layout, movies, users, ratings, files: { movies: file('movies'), users: hasUsers ? file('users') : null, ratings: file('ratings') } };
}
