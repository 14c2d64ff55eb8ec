/**
 * The routing state: where main and nightly live, their versions, the nightly percent and the
 * release. It lives in Postgres (one row in routing_state) so a restarted gateway, or a second one,
 * routes the same way; every change goes through `applyChange`, which logs it in routing_changes.
 */
import { z } from 'zod';
import { withTransaction, type Pool } from '../../lib/db.ts';
import { normUrl, type RoutingPatch, type RoutingState } from '../../lib/routing.ts';

const url = z.string().max(500).refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.search === '' && u.hash === '';
  } catch {
    return false;
  }
}, 'must be an http(s) URL without query or fragment');
const label = z.string().min(1).max(200).regex(/^[^\s]+$/, 'must be a non-empty label without spaces');

export const patchSchema = z.strictObject({
  mainUrl: url.optional(),
  mainVersion: label.optional(),
  nightlyUrl: url.nullable().optional(),
  nightlyVersion: label.nullable().optional(),
  nightlyPercent: z.number().int('must be an integer').min(0, 'must be from 0 to 100').max(100, 'must be from 0 to 100').optional(),
  releaseId: label.nullable().optional(),
  mainReplicas: z.array(url).max(64).optional(),
  nightlyReplicas: z.array(url).max(64).optional(),
});

const fieldRules: Record<string, string> = {
  mainUrl: 'must be an http(s) URL without query or fragment',
  nightlyUrl: 'must be an http(s) URL without query or fragment, or null',
  mainVersion: 'must be a non-empty label without spaces',
  nightlyVersion: 'must be a non-empty label without spaces, or null',
  nightlyPercent: 'must be an integer from 0 to 100',
  releaseId: 'must be a non-empty label without spaces, or null',
  mainReplicas: 'must be a list of at most 64 http(s) URLs without query or fragment',
  nightlyReplicas: 'must be a list of at most 64 http(s) URLs without query or fragment',
};

/** Validates a PUT body; on failure, one line naming the first problem. */
export function parsePatch(body: unknown): { ok: true; patch: RoutingPatch } | { ok: false; reason: string } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { ok: false, reason: 'the body must be a JSON object' };
  const r = patchSchema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    if (issue.code === 'unrecognized_keys') return { ok: false, reason: `unknown field(s): ${issue.keys.join(', ')}; allowed: ${Object.keys(patchSchema.shape).join(', ')}` };
    const key = String(issue.path[0] ?? 'body');
    const got = JSON.stringify((body as Record<string, unknown>)[key]) ?? 'undefined';
    return { ok: false, reason: `${key}: ${fieldRules[key] ?? issue.message}, got ${got.slice(0, 80)}`.replace(/\s+/g, ' ') };
  }
  const patch = r.data as RoutingPatch;
  if (Object.keys(patch).length === 0) return { ok: false, reason: `the body names no field to change; allowed: ${Object.keys(patchSchema.shape).join(', ')}` };
  return { ok: true, patch };
}

/** The state after a patch, or why it would be inconsistent. */
export function merge(current: RoutingState, patch: RoutingPatch): { ok: true; next: RoutingState } | { ok: false; reason: string } {
  const next: RoutingState = { ...current, ...patch };
  next.mainUrl = normUrl(next.mainUrl);
  if (next.nightlyUrl !== null) next.nightlyUrl = normUrl(next.nightlyUrl);
  if (patch.nightlyUrl === null && patch.nightlyVersion === undefined) next.nightlyVersion = null;
  // Replicas run one version: a slot that moves or changes version drops replicas not named again,
  // so that no user is ever answered by a stale replica (deploy them again, then name them).
  const moved = (url: 'mainUrl' | 'nightlyUrl', version: 'mainVersion' | 'nightlyVersion') =>
    (patch[url] !== undefined && (patch[url] === null ? null : normUrl(patch[url]!)) !== current[url]) || (patch[version] !== undefined && patch[version] !== current[version]);
  if (patch.mainReplicas === undefined && moved('mainUrl', 'mainVersion')) next.mainReplicas = [];
  if (patch.nightlyReplicas === undefined && moved('nightlyUrl', 'nightlyVersion')) next.nightlyReplicas = [];
  const replicas = (list: string[], first: string | null) => [...new Set(list.map(normUrl))].filter((u) => u !== first);
  next.mainReplicas = replicas(next.mainReplicas, next.mainUrl);
  next.nightlyReplicas = next.nightlyUrl === null ? [] : replicas(next.nightlyReplicas, next.nightlyUrl);
  if (patch.nightlyReplicas?.length && next.nightlyUrl === null) return { ok: false, reason: 'nightlyReplicas need a nightlyUrl' };
  const shared = next.mainReplicas.find((u) => u === next.nightlyUrl || next.nightlyReplicas.includes(u));
  if (shared && next.nightlyPercent > 0) return { ok: false, reason: `${shared} cannot be a replica of both main and nightly` };
  if (next.nightlyUrl === null && next.nightlyPercent > 0) return { ok: false, reason: 'nightlyPercent above 0 needs a nightlyUrl' };
  if (next.nightlyPercent > 0 && next.releaseId === null) return { ok: false, reason: 'nightlyPercent above 0 needs a releaseId' };
  if (next.nightlyUrl !== null && next.nightlyUrl === next.mainUrl && next.nightlyPercent > 0) return { ok: false, reason: 'nightlyUrl must differ from mainUrl' };
  return { ok: true, next };
}

/** The routing fields only, as logged in routing_changes and returned by GET /admin/routing. */
export function routingFields(s: RoutingState): RoutingPatch {
  return {
    mainUrl: s.mainUrl, mainVersion: s.mainVersion, nightlyUrl: s.nightlyUrl, nightlyVersion: s.nightlyVersion, nightlyPercent: s.nightlyPercent, releaseId: s.releaseId,
    mainReplicas: s.mainReplicas, nightlyReplicas: s.nightlyReplicas,
  };
}

export const sameRouting = (a: RoutingState, b: RoutingState): boolean => JSON.stringify(routingFields(a)) === JSON.stringify(routingFields(b));

interface Row {
  main_url: string; main_version: string; nightly_url: string | null; nightly_version: string | null;
  nightly_percent: number; release_id: string | null; updated_at: Date; updated_by: string;
  main_replicas: string[] | null; nightly_replicas: string[] | null;
}

const fromRow = (r: Row): RoutingState => ({
  mainUrl: r.main_url, mainVersion: r.main_version, nightlyUrl: r.nightly_url, nightlyVersion: r.nightly_version,
  nightlyPercent: r.nightly_percent, releaseId: r.release_id, mainReplicas: r.main_replicas ?? [], nightlyReplicas: r.nightly_replicas ?? [], updatedAt: r.updated_at.toISOString(), updatedBy: r.updated_by,
});

export async function loadState(pool: Pool): Promise<RoutingState | undefined> {
  const { rows } = await pool.query<Row>('SELECT * FROM routing_state WHERE id = 1');
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/**
 * Creates the row on a fresh database (main only, no canary) unless another gateway did first;
 * returns whatever the row holds afterwards.
 */
export async function initState(pool: Pool, initial: { mainUrl: string; mainVersion: string }, by: string): Promise<RoutingState> {
  await withTransaction(pool, async (client) => {
    const { rows } = await client.query<Row>(
      `INSERT INTO routing_state (id, main_url, main_version, nightly_percent, updated_by) VALUES (1, $1, $2, 0, $3)
       ON CONFLICT (id) DO NOTHING RETURNING *`, [normUrl(initial.mainUrl), initial.mainVersion, by]);
    if (rows[0]) {
      const s = fromRow(rows[0]);
      await client.query('INSERT INTO routing_changes (changed_by, before, after) VALUES ($1, NULL, $2)', [by, JSON.stringify(routingFields(s))]);
    }
  });
  return (await loadState(pool))!;
}

/**
 * Applies a patch in one transaction: locks the row, re-checks consistency against what is really
 * stored (another gateway may have changed it), writes the row and the change log.
 * `check` runs on the merged state before the write (e.g. URL health) and may veto it. `patch` may
 * be made from the locked row (a function of it), for a change relative to what is stored.
 */
export async function applyChange(
  pool: Pool, patch: RoutingPatch | ((before: RoutingState) => RoutingPatch), by: string,
  check: (before: RoutingState, next: RoutingState) => Promise<string | undefined>,
): Promise<{ ok: true; state: RoutingState; changed: boolean; changeId?: number } | { ok: false; reason: string }> {
  // Early answers commit a transaction that wrote nothing: the same as a rollback, the lock released.
  return withTransaction(pool, async (client) => {
    const { rows } = await client.query<Row>('SELECT * FROM routing_state WHERE id = 1 FOR UPDATE');
    if (!rows[0]) return { ok: false as const, reason: 'no routing state yet' };
    const before = fromRow(rows[0]);
    const merged = merge(before, typeof patch === 'function' ? patch(before) : patch);
    if (!merged.ok) return merged;
    const problem = await check(before, merged.next);
    if (problem) return { ok: false as const, reason: problem };
    const next = merged.next;
    if (sameRouting(before, next)) return { ok: true as const, state: before, changed: false };
    const { rows: [saved] } = await client.query<Row>(
      `UPDATE routing_state SET main_url = $1, main_version = $2, nightly_url = $3, nightly_version = $4,
         nightly_percent = $5, release_id = $6, main_replicas = $8, nightly_replicas = $9,
         updated_at = clock_timestamp(), updated_by = $7 WHERE id = 1 RETURNING *`,
      [next.mainUrl, next.mainVersion, next.nightlyUrl, next.nightlyVersion, next.nightlyPercent, next.releaseId, by, next.mainReplicas, next.nightlyReplicas]);
    const { rows: [change] } = await client.query<{ id: number }>(
      'INSERT INTO routing_changes (changed_by, before, after) VALUES ($1, $2, $3) RETURNING id',
      [by, JSON.stringify(routingFields(before)), JSON.stringify(routingFields(fromRow(saved)))]);
    return { ok: true as const, state: fromRow(saved), changed: true, changeId: change.id };
  });
}

export async function recentChanges(pool: Pool, limit: number): Promise<unknown[]> {
  const { rows } = await pool.query(
    'SELECT id, changed_at AS "changedAt", changed_by AS "changedBy", before, after FROM routing_changes ORDER BY id DESC LIMIT $1', [limit]);
  return rows;
}
