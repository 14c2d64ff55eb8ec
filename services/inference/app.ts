/** The HTTP face of the inference service: GET /recommend/<userid>, /healthz, /metrics. */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type express from 'express';
import { serviceApp } from '../../lib/http.ts';
import { parseUserId } from '../../lib/routing.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import type { Answer, Engine } from './engine.ts';

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
  /**
   * The version label the slot was deployed as (a release's id, INFERENCE_VERSION), which the
   * routing state names and the gateway checks replicas against; the spec's own version otherwise.
   */
  version?: string;
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
      model: { version: info.version || spec.version, specVersion: spec.version, rule: spec.rule, collection: spec.collection, hash, path },
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
    sendAnswer(res, spec.version, await engine.recommend(user.id, asOf));
  });
  return app;
}

/** One answer: its ids as one line, headers and body in a single write. */
function sendAnswer(res: ServerResponse, version: string, answer: Answer): void {
  const body = answer.ids.join(',');
  res.writeHead(200, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    // Lets the gateway and offline evaluation tell a model answer from a fallback.
    'X-Marquee-Model': version,
    'X-Marquee-Outcome': answer.reason ? `${answer.outcome}:${answer.reason}` : answer.outcome,
  });
  res.end(body);
}

/** The common request, a plain id and nothing else; anything else goes through express. */
const PLAIN = /^\/recommend\/(\d{1,10})$/;

/**
 * The service's request handler: GET /recommend/<digits> answered straight on node:http (express's
 * routing and response helpers cost about as much as a ranking), everything else by the express
 * app, which also holds the full /recommend route (asOf, bad ids, HEAD) with the same answers.
 */
export function inferenceHandler(engine: Engine, info: AppInfo): RequestListener {
  const app = inferenceApp(engine, info);
  const version = engine.model.spec.version;
  return (req: IncomingMessage, res: ServerResponse) => {
    const m = req.method === 'GET' ? PLAIN.exec(req.url ?? '') : null;
    const user = m === null ? null : parseUserId(m[1]);
    if (user === null || !user.ok) {
      void app(req, res);
      return;
    }
    engine.recommend(user.id, null).then((answer) => sendAnswer(res, version, answer), (err: unknown) => {
      console.error(`inference: request for user ${user.id} failed: ${(err as Error).stack}`);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('internal error');
    });
  };
}
