/** The HTTP face of the inference service: GET /recommend/<userid>, /healthz, /metrics. */
import type express from 'express';
import { serviceApp } from '../../lib/http.ts';
import { parseUserId } from '../../lib/routing.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import type { Engine } from './engine.ts';

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** An ISO-8601 time (no zone means UTC, as in the event log), or a one-line reason. */
export function parseAsOf(text: string): Date | string {
  const m = ISO.exec(text);
  const bad = `asOf must be an ISO-8601 time such as 2025-01-31T12:00:00Z, got "${text.slice(0, 60).replace(/[\r\n]/g, ' ')}"`;
  if (!m) return bad;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone = 'Z'] = m;
  const ms = frac.padEnd(3, '0').slice(0, 3);
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}${zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone}`);
  if (Number.isNaN(date.getTime())) return bad;
  // Date rolls 2025-02-30 over to March; a calendar day that does not exist is an error here.
  const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (probe.getUTCMonth() !== Number(mo) - 1 || probe.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return bad;
  return date;
}

export interface AppInfo {
  slot: string;
  image: string | null;
}

export function inferenceApp(engine: Engine, info: AppInfo): express.Express {
  const { spec, hash, path } = engine.model;
  const app = serviceApp({
    registry: engine.registry,
    health: () => ({
      status: 'ok',
      service: 'inference',
      version: packageVersion,
      slot: info.slot,
      model: { version: spec.version, rule: spec.rule, collection: spec.collection, hash, path },
      image: info.image,
      commit: gitCommit(),
      ...engine.health(),
    }),
  });
  // Bodies are tiny and never cached by clients: hashing each one for an ETag is wasted work.
  app.set('etag', false);

  app.get('/recommend/:userid', async (req, res) => {
    const user = parseUserId(req.params.userid);
    const asOfRaw = req.query.asOf;
    let asOf: Date | null = null;
    let problem: string | null = user.ok ? null : user.reason;
    if (problem === null && asOfRaw !== undefined) {
      const parsed = typeof asOfRaw === 'string' ? parseAsOf(asOfRaw) : 'asOf must be given once';
      if (typeof parsed === 'string') problem = parsed;
      else asOf = parsed;
    }
    if (problem !== null || !user.ok) {
      engine.countBadRequest();
      res.status(400).type('text/plain').send(problem ?? 'bad user id');
      return;
    }
    const answer = await engine.recommend(user.id, asOf);
    // Lets the gateway and offline evaluation tell a model answer from a fallback.
    res.setHeader('X-Marquee-Model', spec.version);
    res.setHeader('X-Marquee-Outcome', answer.reason ? `${answer.outcome}:${answer.reason}` : answer.outcome);
    res.type('text/plain').send(answer.ids.join(','));
  });
  return app;
}
