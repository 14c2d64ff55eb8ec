/**
 * Course-style movie id slugs, e.g. `the+shawshank+redemption+1994`.
 *
 * Accepted charset (what `isValidSlug` and the parser allow):
 *   a-z 0-9 and  + - . _ ' & : ! %
 * Course ids are lower-case words joined by `+`, usually ending in the year; the extra
 * punctuation is tolerated because ids from other catalogues (or older course dumps) carry it,
 * and none of it collides with the line grammar. Never allowed: upper case, whitespace,
 * `,` (separates the recommended ids), `/` (path separator in watch lines), `=` (rate lines),
 * non-ASCII. A slug must hold at least one letter or digit (so `.`, `..`, `+` are not ids)
 * and be at most MAX_SLUG_LENGTH characters.
 */
import { MAX_SLUG_LENGTH } from './types.ts';

const SLUG_CHAR = new Uint8Array(128);
const ALNUM = new Uint8Array(128);
for (let c = 0x61; c <= 0x7a; c++) SLUG_CHAR[c] = ALNUM[c] = 1; // a-z
for (let c = 0x30; c <= 0x39; c++) SLUG_CHAR[c] = ALNUM[c] = 1; // 0-9
for (const ch of "+-._'&:!%") SLUG_CHAR[ch.charCodeAt(0)] = 1;

/** True when `s[start, end)` is a valid slug; no substring is allocated, for the parser's hot path. */
export function isValidSlugRange(s: string, start: number, end: number): boolean {
  const len = end - start;
  if (len <= 0 || len > MAX_SLUG_LENGTH) return false;
  let alnum = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || SLUG_CHAR[c] === 0) return false;
    alnum |= ALNUM[c];
  }
  return alnum === 1;
}

/** isValidSlugRange over bytes (the ingest reads watch lines without decoding them). */
export function isValidSlugBytes(b: Uint8Array, start: number, end: number): boolean {
  const len = end - start;
  if (len <= 0 || len > MAX_SLUG_LENGTH) return false;
  let alnum = 0;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c >= 128 || SLUG_CHAR[c] === 0) return false;
    alnum |= ALNUM[c];
  }
  return alnum === 1;
}

export function isValidSlug(s: string): boolean {
  return typeof s === 'string' && isValidSlugRange(s, 0, s.length);
}

// Letters NFKD leaves alone but readers expect spelled out in ASCII.
const FOLD: Record<string, string> = {
  ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', đ: 'd', ð: 'd', þ: 'th', ł: 'l', ı: 'i', ħ: 'h', ŋ: 'n',
};

/**
 * Slug from a title and an optional year: lower case, accents folded (é→e, ß→ss, æ→ae),
 * apostrophes and dots dropped inside words ("Schindler's List" → `schindlers+list`,
 * "E.T." → `et`), every other run of punctuation or space separates words ("Spider-Man" →
 * `spider+man`, "Star Wars: Episode IV" → `star+wars+episode+iv`), words joined by `+`, year last.
 * A title with no Latin letters or digits left becomes `untitled`. The title part is cut at a word
 * boundary so that the whole slug (year included) fits MAX_SLUG_LENGTH. Different titles can give
 * the same slug; use `makeUniqueSlug` where ids must be distinct.
 */
export function makeSlug(title: string, year?: number | null): string {
  const folded = title
    .normalize('NFKD')
    .toLowerCase()
    .replace(/\p{M}+/gu, '')
    .replace(/[ßæœøđðþłıħŋ]/g, (ch) => FOLD[ch] ?? '')
    .replace(/['’‘`´.]+/g, '');
  const words = folded.split(/[^a-z0-9]+/).filter((w) => w.length > 0);
  const suffix = year !== undefined && year !== null && Number.isInteger(year) && year >= 0 ? `+${year}` : '';
  if (words.length === 0) words.push('untitled');
  const budget = MAX_SLUG_LENGTH - suffix.length;
  let head = '';
  for (const w of words) {
    const next = head === '' ? w : `${head}+${w}`;
    if (next.length > budget) {
      if (head === '') head = w.slice(0, budget); // a single giant word: cut it
      break;
    }
    head = next;
  }
  return head + suffix;
}

/**
 * `makeSlug`, then `+2`, `+3`, ... until the slug is not in `taken`; the result is added to `taken`.
 * For importers whose source has two movies with the same title and year.
 */
export function makeUniqueSlug(title: string, year: number | null | undefined, taken: Set<string>): string {
  const base = makeSlug(title, year);
  let slug = base;
  for (let n = 2; taken.has(slug); n++) {
    const tail = `+${n}`;
    slug = base.slice(0, MAX_SLUG_LENGTH - tail.length) + tail;
  }
  taken.add(slug);
  return slug;
}
