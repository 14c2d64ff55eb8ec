/**
 * The simulated streaming platform's world: a catalogue of movies with course-style slug ids and
 * TMDB-like metadata, and users with demographics and hidden tastes. Everything follows from the
 * seed, so two processes (or a test and the service) given the same seed see the same world.
 *
 * Tastes are latent vectors: each genre has a direction, a movie's vector is mostly the mix of its
 * genres' directions plus its own noise, a user's vector leans to a few favourite genres (picked
 * with an age bias). So content features (genres) carry real signal about who likes what, while
 * the per-movie noise leaves room for collaborative signal that only watch data reveals.
 *
 * Movies are built eagerly (27,000 at most, a few MB). Users are derived on demand from
 * seed + id, so a million of them cost no memory.
 */
import { makeUniqueSlug } from '../../lib/events/slug.ts';
import { hash32, Rng, WeightedSampler } from '../../lib/random.ts';

export const MAX_MOVIES = 27_000;
export const MAX_USERS = 1_000_000;
/** Dimension of the hidden taste vectors. */
export const LATENT_DIM = 8;

/** TMDB's movie genre names, with how often each shows up on a movie (roughly TMDB's own mix). */
export const GENRES: readonly { name: string; weight: number }[] = [
  { name: 'Drama', weight: 45 }, { name: 'Comedy', weight: 30 }, { name: 'Thriller', weight: 20 },
  { name: 'Action', weight: 18 }, { name: 'Romance', weight: 15 }, { name: 'Crime', weight: 12 },
  { name: 'Horror', weight: 10 }, { name: 'Adventure', weight: 10 }, { name: 'Science Fiction', weight: 8 },
  { name: 'Mystery', weight: 7 }, { name: 'Fantasy', weight: 7 }, { name: 'Family', weight: 7 },
  { name: 'Documentary', weight: 6 }, { name: 'Animation', weight: 5 }, { name: 'History', weight: 4 },
  { name: 'Music', weight: 4 }, { name: 'War', weight: 3 }, { name: 'TV Movie', weight: 3 }, { name: 'Western', weight: 2 },
];
const GENRE_WEIGHTS = GENRES.map((g) => g.weight);
const YOUNG_GENRES = new Set(['Animation', 'Action', 'Horror', 'Science Fiction', 'Comedy', 'Fantasy']);
const OLD_GENRES = new Set(['Drama', 'History', 'War', 'Western', 'Documentary', 'Music']);

const LANGUAGES = ['en', 'fr', 'es', 'ja', 'de', 'it', 'ko', 'hi', 'zh', 'ru', 'sv', 'pt', 'da', 'cn', 'nl'];
const LANGUAGE_WEIGHTS = [70, 5, 4, 4, 3, 3, 2, 2, 2, 1.5, 1, 1, 0.5, 0.5, 0.5];

/** The course's (MovieLens 1M) occupation names. */
export const OCCUPATIONS = [
  'other or not specified', 'academic/educator', 'artist', 'clerical/admin', 'college/grad student',
  'customer service', 'doctor/health care', 'executive/managerial', 'farmer', 'homemaker', 'K-12 student',
  'lawyer', 'programmer', 'retired', 'sales/marketing', 'scientist', 'self-employed',
  'technician/engineer', 'tradesman/craftsman', 'unemployed', 'writer',
];
const OCCUPATION_WEIGHTS = [8, 5, 3, 3, 14, 2, 4, 10, 0.3, 1, 3, 2, 7, 2, 5, 3, 4, 8, 1, 1.5, 3];

// Word lists for titles. A few accented words keep the slug folding honest (é → e).
const ADJECTIVES = [
  'Last', 'Silent', 'Dark', 'Golden', 'Broken', 'Hidden', 'Lost', 'Eternal', 'Wild', 'Secret', 'Red',
  'Crimson', 'Frozen', 'Burning', 'Forgotten', 'Final', 'Little', 'Great', 'Midnight', 'Perfect', 'Savage',
  'Sweet', 'Bitter', 'Quiet', 'Endless', 'Invisible', 'Electric', 'Wicked', 'Brave', 'Lonely', 'Infinite',
  'Velvet', 'Iron', 'Crystal', 'Shattered', 'Dangerous', 'Beautiful', 'Strange', 'Blue', 'Black', 'White',
  'Restless', 'Hollow', 'Distant', 'Fallen', 'Rising', 'Sacred', 'Cruel', 'Gentle', 'Lucky',
];
const NOUNS = [
  'Night', 'River', 'City', 'Heart', 'Storm', 'Shadow', 'Dream', 'Garden', 'Empire', 'Road', 'Kingdom',
  'Island', 'Mirror', 'Voyage', 'Promise', 'Secret', 'Stranger', 'Summer', 'Winter', 'Mountain', 'Ocean',
  'Star', 'Moon', 'Fire', 'Rain', 'Letter', 'Game', 'Train', 'House', 'Machine', 'Crown', 'Legacy',
  'Witness', 'Hunter', 'Sister', 'Brother', 'Father', 'Daughter', 'Soldier', 'Detective', 'Ghost',
  'Angel', 'Wolf', 'Dragon', 'Thief', 'Queen', 'King', 'Knight', 'Doctor', 'Circus', 'Harbor', 'Frontier',
  'Horizon', 'Symphony', 'Melody', 'Escape', 'Return', 'Revenge', 'Journey', 'Memory', 'Silence',
  'Paradise', 'Labyrinth', 'Orchard', 'Lighthouse', 'Carnival', 'Tide', 'Canyon', 'Valley', 'Desert',
];
const NAMES = [
  'Amélie', 'Harry', 'Grace', 'Jack', 'Molly', 'Oscar', 'Lucy', 'Max', 'Rosa', 'Leo', 'Zoë', 'Frank',
  'Clara', 'Otto', 'Nina', 'Hugo', 'Ida', 'Victor', 'Emma', 'Sam', 'José', 'Marnie', 'Billy', 'Annie',
];
const PLACES = [
  'Paris', 'Tokyo', 'Brooklyn', 'Texas', 'Rome', 'Berlin', 'Cairo', 'Alaska', 'Havana', 'Vienna', 'Mars',
  'Chinatown', 'Manhattan', 'the North', 'the West', 'Bombay', 'Casablanca', 'Montréal', 'São Paulo',
];
const ROMAN = ['II', 'III', 'IV', '2', '3'];

/** Movie metadata exactly as GET /movie/<id> serves it (ARCHITECTURE.md). */
export interface MovieInfo {
  id: string;
  title: string;
  year: number;
  genres: string[];
  original_language: string;
  popularity: number;
  vote_average: number;
  vote_count: number;
  runtime: number;
  release_date: string;
}

export interface Movie extends MovieInfo {
  /** Position in world.movies and in the latent arrays. */
  index: number;
}

/** User info exactly as GET /user/<id> serves it. */
export interface UserInfo {
  user_id: number;
  age: number;
  occupation: string;
  gender: 'M' | 'F';
}

export interface User extends UserInfo {
  /** Hidden taste, unit length, LATENT_DIM long. */
  taste: Float64Array;
  /** Indexes into GENRES of the user's favourite genres (hidden; handy for tests and debugging). */
  favouriteGenres: number[];
  /** How picky the user is about starting a movie (0..1); higher means fewer, better picks. */
  pickiness: number;
}

export interface WorldOptions {
  seed: number;
  movies?: number;
  users?: number;
}

export interface World {
  readonly seed: number;
  readonly movieCount: number;
  readonly userCount: number;
  readonly movies: readonly Movie[];
  /** Movie by slug id, or undefined. */
  movie(id: string): Movie | undefined;
  /** User by id (0..userCount-1), derived from the seed on demand, or undefined. */
  user(id: number): User | undefined;
  /** How much `user` likes `movie` (or the movie at that index), in [0, 1]. */
  affinity(user: User, movie: Movie | number): number;
  /** Movie indexes drawn with probability proportional to popularity. */
  readonly popularitySampler: WeightedSampler;
  /** Movie indexes sorted by popularity, most popular first. */
  readonly byPopularity: readonly number[];
  /** The k movie ids this user likes most (full scan; for tests and oracle recommenders). */
  topMoviesFor(user: User, k: number): string[];
  /** The genres' hidden directions (GENRES order), for tests that check content carries signal. */
  readonly genreVectors: readonly Float64Array[];
}

function normalize(v: Float64Array): Float64Array {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i] * v[i];
  n = Math.sqrt(n) || 1;
  for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function title(rng: Rng): string {
  const adj = () => rng.pick(ADJECTIVES);
  const noun = () => rng.pick(NOUNS);
  let t: string;
  switch (rng.weightedIndex([6, 5, 4, 3, 3, 3, 2, 2, 2, 1])) {
    case 0: t = `The ${adj()} ${noun()}`; break;
    case 1: t = `${noun()} of the ${noun()}`; break;
    case 2: t = `${adj()} ${noun()}`; break;
    case 3: t = `${rng.pick(NAMES)}'s ${noun()}`; break;
    case 4: t = `A ${noun()} in ${rng.pick(PLACES)}`; break;
    case 5: t = `The ${noun()}`; break;
    case 6: t = `${noun()}: The ${adj()} ${noun()}`; break;
    case 7: t = `${rng.pick(NAMES)} and the ${adj()} ${noun()}`; break;
    case 8: t = `${adj()} ${noun()} in ${rng.pick(PLACES)}`; break;
    default: t = `${rng.pick(PLACES)}, ${rng.pick(['1969', 'Year Zero', 'After Dark', 'Mon Amour'])}`;
  }
  if (rng.chance(0.05)) t += ` ${rng.pick(ROMAN)}`;
  return t;
}

export function createWorld(opts: WorldOptions): World {
  const seed = opts.seed;
  const movieCount = opts.movies ?? 5000;
  const userCount = opts.users ?? 50_000;
  if (!Number.isFinite(seed)) throw new Error(`seed must be a number, got ${seed}`);
  if (!Number.isInteger(movieCount) || movieCount < 1 || movieCount > MAX_MOVIES) throw new Error(`movies must be an integer in 1..${MAX_MOVIES}, got ${movieCount}`);
  if (!Number.isInteger(userCount) || userCount < 1 || userCount > MAX_USERS) throw new Error(`users must be an integer in 1..${MAX_USERS}, got ${userCount}`);

  // Separate streams for genres, movies and users, so that e.g. a bigger catalogue does not
  // change who the users are.
  const genreRng = new Rng(hash32(seed, 1));
  const genreVectors = GENRES.map(() => {
    const v = new Float64Array(LATENT_DIM);
    for (let d = 0; d < LATENT_DIM; d++) v[d] = genreRng.normal();
    return normalize(v);
  });

  const rng = new Rng(hash32(seed, 2));
  const taken = new Set<string>();
  const movies: Movie[] = [];
  const latent = new Float64Array(movieCount * LATENT_DIM);
  const bias = new Float64Array(movieCount);
  for (let i = 0; i < movieCount; i++) {
    // Recent years are more common, as in any catalogue.
    const year = 2025 - Math.floor(96 * Math.pow(rng.next(), 1.7));
    const t = title(rng);
    const id = makeUniqueSlug(t, rng.chance(0.05) ? null : year, taken);

    const genreCount = rng.weightedIndex([35, 40, 25]) + 1;
    const genreIdx: number[] = [];
    while (genreIdx.length < genreCount) {
      const g = rng.weightedIndex(GENRE_WEIGHTS);
      if (!genreIdx.includes(g)) genreIdx.push(g);
    }

    // Latent: mostly the genres' directions (first genre counts most), plus the movie's own part.
    const v = new Float64Array(LATENT_DIM);
    genreIdx.forEach((g, k) => {
      const w = k === 0 ? 1 : 0.6;
      for (let d = 0; d < LATENT_DIM; d++) v[d] += w * genreVectors[g][d];
    });
    normalize(v);
    for (let d = 0; d < LATENT_DIM; d++) v[d] = 0.8 * v[d] + 0.45 * rng.normal();
    normalize(v);
    latent.set(v, i * LATENT_DIM);

    const age = 2025 - year;
    const popularity = Math.max(0.6, rng.logNormal(1.3, 1.25) * (1 + 1.5 * Math.exp(-age / 6)));
    const voteCount = Math.max(0, Math.round(popularity * rng.logNormal(3.2, 0.9)));
    const voteSd = voteCount < 20 ? 1.6 : 0.8;
    const voteAverage = voteCount === 0 ? 0 : Math.round(clamp(rng.normal(6.3, voteSd), 1, 9.6) * 10) / 10;
    const genreNames = genreIdx.map((g) => GENRES[g].name);
    const baseRuntime = genreNames.includes('Animation') ? 88 : genreNames.includes('Documentary') ? 92 : 108;
    const runtime = Math.round(clamp(rng.normal(baseRuntime, 18), 62, 220));
    const month = rng.int(1, 12);
    const day = rng.int(1, DAYS_IN_MONTH[month - 1]);
    movies.push({
      index: i,
      id,
      title: t,
      year,
      genres: genreNames,
      original_language: rng.weightedPick(LANGUAGES, LANGUAGE_WEIGHTS),
      popularity: Math.round(popularity * 1000) / 1000,
      vote_average: voteAverage,
      vote_count: voteCount,
      runtime,
      release_date: `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`,
    });
    // Well rated movies are liked a little more by everyone.
    bias[i] = voteCount === 0 ? 0 : 0.35 * (voteAverage - 6.3);
  }

  const byId = new Map(movies.map((m) => [m.id, m]));
  const popularitySampler = new WeightedSampler(movies.map((m) => m.popularity));
  const byPopularity = movies.map((m) => m.index).sort((a, b) => movies[b].popularity - movies[a].popularity || a - b);

  // Users are cheap to derive; a small cache spares the work for the users active right now.
  const cache = new Map<number, User>();
  function makeUser(id: number): User {
    const r = new Rng(hash32(seed, 3, id));
    const age = Math.round(clamp(r.normal(33, 12), 13, 85));
    const gender: 'M' | 'F' = r.chance(0.58) ? 'M' : 'F';
    const occupation = age < 18 ? 'K-12 student' : age > 67 && r.chance(0.7) ? 'retired' : r.weightedPick(OCCUPATIONS, OCCUPATION_WEIGHTS);
    const weights = GENRES.map((g) => g.weight * (age < 25 && YOUNG_GENRES.has(g.name) ? 2 : age > 50 && OLD_GENRES.has(g.name) ? 2 : 1));
    const favourites: number[] = [];
    const n = r.weightedIndex([30, 45, 25]) + 1;
    while (favourites.length < n) {
      const g = r.weightedIndex(weights);
      if (!favourites.includes(g)) favourites.push(g);
    }
    const taste = new Float64Array(LATENT_DIM);
    favourites.forEach((g, k) => {
      const w = k === 0 ? 1 : 0.7;
      for (let d = 0; d < LATENT_DIM; d++) taste[d] += w * genreVectors[g][d];
    });
    normalize(taste);
    for (let d = 0; d < LATENT_DIM; d++) taste[d] = 0.75 * taste[d] + 0.5 * r.normal();
    normalize(taste);
    return { user_id: id, age, occupation, gender, taste, favouriteGenres: favourites, pickiness: r.float(0.2, 0.8) };
  }

  function affinityAt(user: User, index: number): number {
    const o = index * LATENT_DIM;
    let dot = 0;
    for (let d = 0; d < LATENT_DIM; d++) dot += user.taste[d] * latent[o + d];
    // Cosine in [-1, 1] dominates; the movie's rating nudges it. Logistic squashes into (0, 1).
    return 1 / (1 + Math.exp(-(3.5 * dot + bias[index] - 0.8)));
  }

  return {
    seed,
    movieCount,
    userCount,
    movies,
    genreVectors,
    popularitySampler,
    byPopularity,
    movie: (id) => byId.get(id),
    user(id) {
      if (!Number.isInteger(id) || id < 0 || id >= userCount) return undefined;
      let u = cache.get(id);
      if (!u) {
        if (cache.size >= 8192) cache.clear();
        u = makeUser(id);
        cache.set(id, u);
      }
      return u;
    },
    affinity: (user, movie) => affinityAt(user, typeof movie === 'number' ? movie : movie.index),
    topMoviesFor(user, k) {
      const scores = new Float64Array(movieCount);
      for (let i = 0; i < movieCount; i++) scores[i] = affinityAt(user, i);
      const order = Array.from({ length: movieCount }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
      return order.slice(0, k).map((i) => movies[i].id);
    },
  };
}

/** The public fields of a movie (what GET /movie/<id> answers), nothing hidden. */
export function movieInfo(m: Movie): MovieInfo {
  return {
    id: m.id, title: m.title, year: m.year, genres: [...m.genres], original_language: m.original_language,
    popularity: m.popularity, vote_average: m.vote_average, vote_count: m.vote_count, runtime: m.runtime,
    release_date: m.release_date,
  };
}

/** The public fields of a user (what GET /user/<id> answers), no hidden taste. */
export function userInfo(u: User): UserInfo {
  return { user_id: u.user_id, age: u.age, occupation: u.occupation, gender: u.gender };
}
