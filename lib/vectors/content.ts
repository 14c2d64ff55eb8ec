/**
 * Content vectors: a movie's metadata as a fixed-layout vector, L2-normalised for cosine search.
 *
 * Layout (CONTENT_DIM = 44): genres multi-hot (19 TMDB genres + "other"), release decade (10
 * buckets, with some weight spilled to the neighbouring decades so the 80s sit nearer the 90s
 * than the 50s), original language (10 common + "other" + "unknown"), log popularity, and vote
 * average. Each block is scaled to a fixed norm before the whole is normalised, so genres weigh
 * most, then decade and language, then the two scalars. Every constant is fixed (no statistics
 * of the current catalogue), so a vector depends only on its own movie: incremental additions
 * land in exactly the space of a full build.
 */

export interface MovieMeta {
  id: string;
  year: number | null;
  genres: string[] | null;
  original_language: string | null;
  popularity: number | null;
  vote_average: number | null;
  vote_count?: number | null;
  release_date?: string | Date | null;
}

export const GENRES = [
  'action', 'adventure', 'animation', 'comedy', 'crime', 'documentary', 'drama', 'family', 'fantasy', 'history',
  'horror', 'music', 'mystery', 'romance', 'science fiction', 'tv movie', 'thriller', 'war', 'western',
] as const;
const GENRE_ALIASES: Record<string, string> = { 'sci-fi': 'science fiction', 'scifi': 'science fiction', 'musical': 'music', 'film-noir': 'crime', 'children': 'family', "children's": 'family' };
const LANGUAGES = ['en', 'fr', 'es', 'ja', 'de', 'it', 'ko', 'hi', 'zh', 'ru'] as const;
/** Decade buckets: unknown, before 1950, 1950s … 2010s, 2020 on. */
const DECADE_BUCKETS = 10;

const GENRE_OFFSET = 0;
const DECADE_OFFSET = GENRE_OFFSET + GENRES.length + 1;
const LANGUAGE_OFFSET = DECADE_OFFSET + DECADE_BUCKETS;
const POPULARITY_INDEX = LANGUAGE_OFFSET + LANGUAGES.length + 2;
const VOTE_INDEX = POPULARITY_INDEX + 1;
export const CONTENT_DIM = VOTE_INDEX + 1;

/** Block norms before the final normalisation: how much each kind of metadata counts. */
const WEIGHT = { genres: 1, decade: 0.5, language: 0.4, popularity: 0.3, vote: 0.3 };
/** log1p(popularity) is divided by this and centred, so typical movies sit near 0 and blockbusters near +1. */
const LOG_POPULARITY_SCALE = Math.log1p(500);
const LOG_POPULARITY_CENTRE = 0.3;

function decadeBucket(year: number | null): number {
  if (year === null || !Number.isFinite(year)) return 0;
  if (year < 1950) return 1;
  if (year >= 2020) return 9;
  return 2 + Math.floor((year - 1950) / 10);
}

export function movieYear(m: Pick<MovieMeta, 'year' | 'release_date'>): number | null {
  if (typeof m.year === 'number' && Number.isFinite(m.year)) return m.year;
  if (m.release_date instanceof Date) return m.release_date.getUTCFullYear();
  if (typeof m.release_date === 'string' && /^\d{4}/.test(m.release_date)) return Number(m.release_date.slice(0, 4));
  return null;
}

export function contentVector(m: MovieMeta): Float32Array {
  const v = new Float64Array(CONTENT_DIM);

  const genreIdx = new Set<number>();
  for (const raw of m.genres ?? []) {
    const g = raw.trim().toLowerCase();
    const i = (GENRES as readonly string[]).indexOf(GENRE_ALIASES[g] ?? g);
    genreIdx.add(i >= 0 ? i : GENRES.length);
  }
  if (genreIdx.size) for (const i of genreIdx) v[GENRE_OFFSET + i] = WEIGHT.genres / Math.sqrt(genreIdx.size);

  const d = decadeBucket(movieYear(m));
  const decade = new Float64Array(DECADE_BUCKETS);
  decade[d] = 1;
  if (d >= 1) {
    if (d > 1) decade[d - 1] = 0.35;
    if (d < DECADE_BUCKETS - 1) decade[d + 1] = 0.35;
  }
  const dn = Math.hypot(...decade);
  for (let i = 0; i < DECADE_BUCKETS; i++) v[DECADE_OFFSET + i] = (WEIGHT.decade * decade[i]) / dn;

  const lang = m.original_language?.trim().toLowerCase() ?? '';
  const li = (LANGUAGES as readonly string[]).indexOf(lang);
  v[LANGUAGE_OFFSET + (li >= 0 ? li : lang ? LANGUAGES.length : LANGUAGES.length + 1)] = WEIGHT.language;

  if (m.popularity !== null && Number.isFinite(m.popularity)) {
    const x = Math.log1p(Math.max(0, m.popularity)) / LOG_POPULARITY_SCALE - LOG_POPULARITY_CENTRE;
    v[POPULARITY_INDEX] = WEIGHT.popularity * Math.max(-1, Math.min(1, 2 * x));
  }
  if (m.vote_average !== null && Number.isFinite(m.vote_average) && (m.vote_count ?? 1) > 0) {
    v[VOTE_INDEX] = WEIGHT.vote * Math.max(-1, Math.min(1, (m.vote_average - 6) / 3));
  }

  let norm = 0;
  for (let i = 0; i < CONTENT_DIM; i++) norm += v[i] * v[i];
  norm = Math.sqrt(norm);
  const out = new Float32Array(CONTENT_DIM);
  for (let i = 0; i < CONTENT_DIM; i++) out[i] = v[i] / norm;
  return out;
}

/** Chroma metadata cannot hold null: unknown year is -1, unknown numbers 0 / -1, unknown strings ''. */
export function contentMetadata(m: MovieMeta): Record<string, string | number> {
  return {
    popularity: m.popularity ?? 0,
    year: movieYear(m) ?? -1,
    vote_average: m.vote_average ?? -1,
    vote_count: m.vote_count ?? 0,
    language: m.original_language ?? '',
    genres: (m.genres ?? []).join('|'),
  };
}
