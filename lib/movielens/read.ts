/**
 * Reading a MovieLens download in either classic layout:
 * - 100K (`ml-100k/`): u.data `user \t movie \t rating \t unix time`; u.item `id|title|release
 *   date|video date|IMDb URL|19 genre flags`; u.user `id|age|gender|occupation|zip`.
 * - 1M (`ml-1m/`): ratings.dat `user::movie::rating::unix time`; movies.dat `id::title::genres
 *   (a|b|c)`; users.dat `id::gender::age code::occupation code::zip`.
 * The files are Latin-1. Titles carry their year in parentheses and put articles last
 * ("Shawshank Redemption, The (1994)"); the slug is made from "The Shawshank Redemption" and 1994,
 * which is the course's id for that movie.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { makeUniqueSlug } from '../events/slug.ts';

export type Layout = '100k' | '1m';

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
  /** Lines that could not be read, by file, with a few examples. */
  skipped: { file: string; line: number; reason: string }[];
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

export function detectLayout(dir: string): Layout {
  if (existsSync(path.join(dir, 'u.data')) && existsSync(path.join(dir, 'u.item'))) return '100k';
  if (existsSync(path.join(dir, 'ratings.dat')) && existsSync(path.join(dir, 'movies.dat'))) return '1m';
  throw new Error(`${dir} holds neither a MovieLens 100K layout (u.data, u.item, u.user) nor a 1M layout (ratings.dat, movies.dat, users.dat)`);
}

const latin1 = new TextDecoder('latin1');

function lines(file: string): string[] {
  return latin1.decode(readFileSync(file)).split(/\r?\n/);
}

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

/** Where each layout keeps its records, how fields are separated, and how a movie and a user line read. */
const LAYOUTS: Record<Layout, {
  files: { movies: string; users: string; ratings: string };
  sep: string;
  ratingSep: string;
  movie(f: string[]): { id: number; title: string; year: number | null; genres: string[] } | null;
  user(f: string[]): MlUser | null;
  expected: { movies: string; users: string; ratings: string };
}> = {
  '100k': {
    files: { movies: 'u.item', users: 'u.user', ratings: 'u.data' },
    sep: '|',
    ratingSep: '\t',
    movie(f) {
      const id = Number(f[0]);
      if (f.length < 5 || !Number.isInteger(id) || id < 0) return null;
      const flags = f.slice(5, 5 + GENRES_100K.length);
      const released = /(\d{4})$/.exec(f[2] ?? '');
      return { id, title: f[1], year: released ? Number(released[1]) : null, genres: GENRES_100K.filter((g, k) => flags[k] === '1' && g !== 'unknown') };
    },
    user(f) {
      const id = Number(f[0]);
      if (f.length < 4 || !Number.isInteger(id) || id < 0) return null;
      return { id, age: Number(f[1]) || null, gender: f[2] || null, occupation: f[3] || null };
    },
    expected: {
      movies: 'expected id|title|release date|video date|url|genre flags',
      users: 'expected id|age|gender|occupation|zip',
      ratings: 'expected user \\t movie \\t rating 1-5 \\t unix time',
    },
  },
  '1m': {
    files: { movies: 'movies.dat', users: 'users.dat', ratings: 'ratings.dat' },
    sep: '::',
    ratingSep: '::',
    movie(f) {
      const id = Number(f[0]);
      if (f.length < 3 || !Number.isInteger(id) || id < 0) return null;
      return { id, title: f[1], year: null, genres: f[2].split('|').map((g) => g.trim().toLowerCase()).filter((g) => g && g !== '(no genres listed)') };
    },
    user(f) {
      const id = Number(f[0]);
      if (f.length < 4 || !Number.isInteger(id) || id < 0) return null;
      return { id, gender: f[1] || null, age: Number(f[2]) || null, occupation: OCCUPATIONS_1M[Number(f[3])] ?? null };
    },
    expected: {
      movies: 'expected id::title::genres',
      users: 'expected id::gender::age::occupation::zip',
      ratings: 'expected user::movie::rating 1-5::unix time',
    },
  },
};

export function readMovieLens(dir: string): MovieLensData {
  const layout = detectLayout(dir);
  const L = LAYOUTS[layout];
  const skipped: MovieLensData['skipped'] = [];
  const movies = new Map<number, MlMovie>();
  const users = new Map<number, MlUser>();
  const ratings: MlRating[] = [];
  const taken = new Set<string>();
  /** Calls read with the fields of each non-blank line; a line it cannot read (false) is skipped with the reason. */
  const each = (kind: 'movies' | 'users' | 'ratings', sep: string, read: (f: string[]) => boolean) => {
    const file = L.files[kind];
    lines(path.join(dir, file)).forEach((l, i) => {
      if (l.trim() !== '' && !read(l.split(sep))) skipped.push({ file, line: i + 1, reason: L.expected[kind] });
    });
  };

  each('movies', L.sep, (f) => {
    const m = L.movie(f);
    if (m === null) return false;
    const { title, year } = parseTitle(m.title, m.year);
    movies.set(m.id, { mlId: m.id, slug: makeUniqueSlug(title, year, taken), title, year, genres: m.genres });
    return true;
  });
  if (existsSync(path.join(dir, L.files.users))) {
    each('users', L.sep, (f) => {
      const u = L.user(f);
      if (u !== null) users.set(u.id, u);
      return u !== null;
    });
  }
  each('ratings', L.ratingSep, (f) => {
    const r = rating(f[2]);
    const userId = Number(f[0]);
    const mlMovieId = Number(f[1]);
    const at = Number(f[3]);
    if (f.length < 4 || r === null || !Number.isInteger(userId) || userId < 0 || !Number.isFinite(at)) return false;
    ratings.push({ userId, mlMovieId, rating: r, atMs: at * 1000 });
    return true;
  });
  const known = ratings.filter((r) => movies.has(r.mlMovieId));
  if (known.length < ratings.length) skipped.push({ file: L.files.ratings, line: 0, reason: `${ratings.length - known.length} ratings of movies missing from the movie file` });
  known.sort((a, b) => a.atMs - b.atMs || a.userId - b.userId || a.mlMovieId - b.mlMovieId);
  return { layout, movies, users, ratings: known, skipped };
}
