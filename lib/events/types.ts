/**
 * Typed events parsed from the plain-text Kafka lines of the streaming platform
 * (contract: "Kafka lines" in ARCHITECTURE.md).
 *
 * Time is carried twice because no single JS value holds it exactly:
 * - `atIso` keeps the line's own digits, cut to microseconds (Postgres' precision; digits 7-9 are
 *   truncated, never rounded, so an event never moves into the next second or day) and ends in `Z`.
 *   The `Z` makes it safe for both `timestamptz` (read as UTC whatever the session time zone)
 *   and `timestamp` (Postgres ignores a zone given to a zoneless column).
 * - `atMs` is epoch milliseconds (fraction truncated to ms), for arithmetic and ordering.
 */

/** Postgres `int` upper bound: user ids, latencies and statuses must fit a 4-byte column. */
export const MAX_INT4 = 2_147_483_647;
/** Longest accepted line; longer input is rejected before any other work. */
export const MAX_LINE_LENGTH = 4096;
/** Longest accepted movie id slug. */
export const MAX_SLUG_LENGTH = 200;
/** Largest accepted minute chunk: far beyond any real runtime, still a plain int. */
export const MAX_MINUTE = 100_000;
/** Longest accepted recommendation server name (a DNS name plus a port fits well within). */
export const MAX_SERVER_LENGTH = 255;

export type EventKind = 'watch' | 'rate' | 'recommendation' | 'account';

interface EventBase {
  /** `YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`, the line's timestamp in UTC, at most microseconds. */
  atIso: string;
  /** Epoch milliseconds of `atIso` (sub-millisecond digits dropped). */
  atMs: number;
  /** Non-negative integer ≤ MAX_INT4. */
  userId: number;
}

/** `<time>,<user>,GET /data/m/<movie>/<minute>.mpg` */
export interface WatchEvent extends EventBase {
  kind: 'watch';
  movieId: string;
  minute: number;
}

/** `<time>,<user>,GET /rate/<movie>=<rating>` */
export interface RateEvent extends EventBase {
  kind: 'rate';
  movieId: string;
  rating: 1 | 2 | 3 | 4 | 5;
}

/**
 * `<time>,<user>,recommendation request <server>, status <code>, result: <ids or error>, <n> ms`
 *
 * Exactly one of the two result shapes is used:
 * - `error === null`: `movieIds` is the answered list (possibly empty);
 * - `error !== null`: `movieIds` is empty and `error` is the result text (status 0 always, and a
 *   non-2xx status whose result is not a list of valid movie ids, e.g. an HTTP error body).
 */
export interface RecommendationEvent extends EventBase {
  kind: 'recommendation';
  /** e.g. `17645-team12.isri.cmu.edu:8082`: printable ASCII, no spaces or commas. */
  server: string;
  /** HTTP status, 0 when the platform got no answer (then `error` says why). 0-999. */
  status: number;
  movieIds: string[];
  error: string | null;
  /** The trailing `<n> ms`: response time seen by the platform. */
  latencyMs: number;
}

/** `<time>,<user>,GET /create_account` */
export interface AccountEvent extends EventBase {
  kind: 'account';
}

export type LogEvent = WatchEvent | RateEvent | RecommendationEvent | AccountEvent;

/**
 * A parse never throws; it yields an event or a short, stable reason (suitable as a metrics
 * label after cutting any parenthesised detail, and for the `dead_letters.reason` column).
 */
export type ParseResult = { ok: true; event: LogEvent } | { ok: false; reason: string };
