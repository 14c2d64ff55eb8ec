/**
 * Sticky canary assignment, shared by the gateway, its tests and anything that needs to know
 * which slot a user is in (evaluation, simulations). Pure: no I/O, no clock, no randomness.
 */
import { createHash } from 'node:crypto';

export type Slot = 'main' | 'nightly';
export const SLOTS = ['main', 'nightly'] as const satisfies readonly Slot[];

/**
 * Where main and nightly live, their versions, the nightly percent and the release: the gateway
 * keeps it (services/gateway/state.ts), its admin API answers it and takes RoutingPatch changes.
 */
export interface RoutingState {
  mainUrl: string;
  mainVersion: string;
  nightlyUrl: string | null;
  nightlyVersion: string | null;
  nightlyPercent: number;
  releaseId: string | null;
  /** More endpoints of main (replicas of the same version) besides mainUrl; users of main are spread over all. */
  mainReplicas: string[];
  /** Likewise for nightly. */
  nightlyReplicas: string[];
  updatedAt: string;
  updatedBy: string;
}

/** The fields an admin may set; everything else in a PUT body is an error. */
export type RoutingPatch = Partial<Pick<RoutingState, 'mainUrl' | 'mainVersion' | 'nightlyUrl' | 'nightlyVersion' | 'nightlyPercent' | 'releaseId' | 'mainReplicas' | 'nightlyReplicas'>>;

/**
 * Normalises a URL so that equal origins compare equal (no trailing slash). The gateway stores
 * every routed URL this way; code that matches URLs against the routing state compares through it.
 */
export const normUrl = (u: string): string => u.replace(/\/+$/, '');

/** One slot's fields of a routing state. */
export function slotRouting(s: RoutingState, slot: Slot): { url: string | null; version: string | null; replicas: string[] } {
  return slot === 'main'
    ? { url: s.mainUrl, version: s.mainVersion, replicas: s.mainReplicas }
    : { url: s.nightlyUrl, version: s.nightlyVersion, replicas: s.nightlyReplicas };
}

/** The replicas a slot's routing state names besides its URL. */
export function namedReplicas(s: Pick<RoutingState, 'mainReplicas' | 'nightlyReplicas'>, slot: Slot): string[] {
  return slot === 'main' ? s.mainReplicas : s.nightlyReplicas;
}

/** The patch that names `replicas` for the slot, with its version when given. */
export function replicasPatch(slot: Slot, replicas: string[], version?: string): RoutingPatch {
  if (slot === 'main') return version === undefined ? { mainReplicas: replicas } : { mainVersion: version, mainReplicas: replicas };
  return version === undefined ? { nightlyReplicas: replicas } : { nightlyVersion: version, nightlyReplicas: replicas };
}

/**
 * Every endpoint of a slot, its first URL first. Users are sticky to a slot (slotFor); which
 * replica of that slot answers does not matter, since all run the same version.
 */
export function slotEndpoints(s: Pick<RoutingState, 'mainUrl' | 'nightlyUrl' | 'mainReplicas' | 'nightlyReplicas'>, slot: Slot): string[] {
  if (slot === 'main') return [s.mainUrl, ...s.mainReplicas.filter((u) => u !== s.mainUrl)];
  return s.nightlyUrl === null ? [] : [s.nightlyUrl, ...s.nightlyReplicas.filter((u) => u !== s.nightlyUrl)];
}

/** Both slots' endpoints (slotEndpoints) and every routed URL once, main's first. */
export interface RoutingEndpoints { readonly main: readonly string[]; readonly nightly: readonly string[]; readonly all: readonly string[] }

/**
 * The endpoint lists of a routing state, computed once per state change so that the request path
 * only reads them (slotEndpoints allocates on every call). Frozen: they are shared by every request.
 */
export function routingEndpoints(s: Pick<RoutingState, 'mainUrl' | 'nightlyUrl' | 'mainReplicas' | 'nightlyReplicas'>): RoutingEndpoints {
  const main = Object.freeze(slotEndpoints(s, 'main'));
  const nightly = Object.freeze(slotEndpoints(s, 'nightly'));
  return Object.freeze({ main, nightly, all: Object.freeze([...new Set([...main, ...nightly])]) });
}


/** Buckets per percent point: the percent is compared with the bucket at 0.01-point resolution. */
const BUCKETS = 10_000;

/**
 * The user's bucket (0..9999) for one release. It depends on the release id too, so that each
 * release draws a fresh sample of users instead of always canarying the same ones.
 * sha256 rather than a faster hash: it is stable across languages and versions, and ~1 µs is nothing
 * next to a network hop. 2^32 mod 10^4 leaves a bias below 2e-6 per bucket.
 */
export function bucketOf(userId: number, releaseId: string): number {
  const digest = createHash('sha256').update(`${releaseId}:${userId}`).digest();
  return digest.readUInt32BE(0) % BUCKETS;
}

/**
 * The slot serving `userId` while `releaseId` runs with `percent` (0–100) of users in nightly.
 * A user is in nightly when its bucket falls under the percent, so raising the percent only moves
 * users from main to nightly, never back; without a release everyone is in main.
 */
export function slotFor(userId: number, releaseId: string | null | undefined, percent: number): Slot {
  if (!releaseId || !(percent > 0)) return 'main';
  return bucketOf(userId, releaseId) < Math.round(percent * (BUCKETS / 100)) ? 'nightly' : 'main';
}

/** Largest user id the schema holds (users.id and the history's user_id are Postgres integers). */
export const MAX_USER_ID = 2_147_483_647;

/** Parses the <userid> path segment of /recommend/<userid>; a reason on one line when it is not a user id. */
export function parseUserId(raw: string): { ok: true; id: number } | { ok: false; reason: string } {
  const shown = raw.slice(0, 40).replace(/[\r\n]/g, ' ');
  if (!/^\d+$/.test(raw)) return { ok: false, reason: `user id must be a non-negative integer, got "${shown}"` };
  const id = Number(raw);
  if (id > MAX_USER_ID) return { ok: false, reason: `user id must be at most ${MAX_USER_ID}, got ${shown}` };
  return { ok: true, id };
}
