/**
 * The admin API, the only way to change routing:
 *   GET /admin/routing              the state in force
 *   PUT /admin/routing              JSON with any of mainUrl, mainVersion, nightlyUrl, nightlyVersion,
 *                                   nightlyPercent, releaseId, mainReplicas, nightlyReplicas (omitted
 *                                   fields keep their value; nightlyUrl: null removes nightly). A new
 *                                   URL must answer /healthz; its version defaults to the
 *                                   model.version it reports. The replicas are a slot's endpoints
 *                                   besides its URL, each running the slot's version; a slot whose
 *                                   URL or version changes drops replicas not named again.
 *   GET /admin/routing/changes      the change log, newest first (?limit=, default 50)
 * Every call needs `Authorization: Bearer <services.gateway.adminToken>`. The caller names itself with
 * an `X-Marquee-Actor` header (e.g. a workflow id), recorded as who made the change.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { Pool } from '../../lib/db.ts';
import type { Gateway, GatewayOptions } from './gateway.ts';
import { probe } from './health.ts';
import { SLOTS, slotRouting, type RoutingState } from '../../lib/routing.ts';
import { applyChange, parsePatch, recentChanges, routingFields } from './state.ts';
import type { Upstreams } from './upstream.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 300);

export function adminRouter(gateway: Gateway, pool: Pool, upstreams: Upstreams, opts: GatewayOptions): express.Router {
  const router = express.Router();
  const expected = digest(opts.adminToken);

  router.use((req, res, next) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.get('authorization') ?? '');
    // Compare digests so the comparison takes the same time whatever the length of the guess.
    if (!m || !timingSafeEqual(digest(m[1]), expected)) {
      res.status(401).set('www-authenticate', 'Bearer realm="marquee-gateway"').type('text/plain')
        .send(m ? 'wrong admin token' : 'missing bearer token: send Authorization: Bearer <services.gateway.adminToken>');
      return;
    }
    next();
  });

  const show = (s: RoutingState) => ({ ...routingFields(s), updatedAt: s.updatedAt, updatedBy: s.updatedBy });

  router.get('/routing', (_req, res) => { res.json(show(gateway.current())); });

  router.get('/routing/changes', async (req, res) => {
    const limit = Math.min(1000, Math.max(1, Number(req.query.limit ?? 50) || 50));
    res.json(await recentChanges(pool, limit));
  });

  router.put('/routing', express.json({ limit: '16kb', strict: false }), async (req, res) => {
    const parsed = parsePatch(req.body);
    if (!parsed.ok) { res.status(400).type('text/plain').send(oneLine(parsed.reason)); return; }
    const patch = parsed.patch;
    const actor = oneLine(req.get('x-marquee-actor') ?? '') || `admin@${req.ip ?? 'unknown'}`;
    const result = await applyChange(pool, patch, actor, async (before, next) => {
      // Probe only URLs that change: a percent change must not fail because a slot is momentarily slow.
      for (const slot of SLOTS) {
        const url = slotRouting(next, slot).url;
        if (url === null || url === slotRouting(before, slot).url) continue;
        const p = await probe(upstreams, url, 2000);
        if (!p.ok) return `${slot}Url: ${p.reason}`;
        const given = slot === 'main' ? patch.mainVersion : patch.nightlyVersion;
        if (given) continue;
        if (!p.version) return `${slot}Version: not given and ${url}/healthz reports no model.version`;
        if (slot === 'main') next.mainVersion = p.version;
        else next.nightlyVersion = p.version;
      }
      if (next.nightlyUrl !== null && next.nightlyVersion === null) return 'nightlyVersion: needed with a nightlyUrl';
      // A new replica must answer and run its slot's version: users of a slot see one version. When
      // the slot's version changes, every replica named is new to it and checked again.
      for (const slot of SLOTS) {
        const { replicas, version } = slotRouting(next, slot);
        const old = slotRouting(before, slot);
        const sameVersion = version === old.version;
        for (const url of replicas) {
          if (sameVersion && old.replicas.includes(url)) continue;
          const p = await probe(upstreams, url, 2000);
          if (!p.ok) return `${slot}Replicas: ${p.reason}`;
          if (p.version !== undefined && p.version !== version) return `${slot}Replicas: ${url} runs ${p.version}, not ${slot}'s version ${version}`;
        }
      }
      return undefined;
    });
    if (!result.ok) { res.status(400).type('text/plain').send(oneLine(result.reason)); return; }
    if (result.changed) gateway.setState(result.state, `PUT by ${actor}`);
    res.json({ changed: result.changed, changeId: result.changeId ?? null, routing: show(result.state) });
  });

  // Body-parser failures (bad JSON, too large) come here: answer with one line, never an HTML page.
  router.use((err: Error & { status?: number; type?: string }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
    const reason = err.type === 'entity.parse.failed' ? 'the body is not valid JSON' : oneLine(err.message);
    if (status === 500) opts.log(`admin error: ${err.message}`);
    res.status(status).type('text/plain').send(reason);
  });

  return router;
}
