/**
 * The platform's info API: GET /movie/<id> and GET /user/<id> answer the metadata of
 * ARCHITECTURE.md as JSON (404 with a message for an id the world does not have), beside the
 * /healthz and /metrics every service serves.
 */
import type express from 'express';
import { serviceApp } from '../../lib/http.ts';
import { Registry } from '../../lib/metrics.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import { movieInfo, userInfo, type World } from './world.ts';

export interface ApiOptions {
  registry?: Registry;
  /** Extra fields for /healthz (traffic progress, say). */
  health?: () => Record<string, unknown>;
}

export function createApi(world: World, opts: ApiOptions = {}): express.Express {
  const registry = opts.registry ?? new Registry();
  const requests = registry.counter('simulator_api_requests_total', 'Info API requests by endpoint and status', ['endpoint', 'status']);
  const app = serviceApp({
    registry,
    health: () => ({
      status: 'ok',
      service: 'simulator',
      version: packageVersion,
      commit: gitCommit(),
      seed: world.seed,
      movies: world.movieCount,
      users: world.userCount,
      ...opts.health?.(),
    }),
  });

  app.get('/movie/:id', (req, res) => {
    const id = req.params.id;
    const movie = world.movie(id);
    if (!movie) {
      requests.inc({ endpoint: 'movie', status: 404 });
      res.status(404).json({ error: `unknown movie ${id}` });
      return;
    }
    requests.inc({ endpoint: 'movie', status: 200 });
    res.json(movieInfo(movie));
  });

  app.get('/user/:id', (req, res) => {
    const id = req.params.id;
    // Digits only: "12abc", "1e3" or " 7" are not user ids, even if Number() would take them.
    const user = /^\d{1,9}$/.test(id) ? world.user(Number(id)) : undefined;
    if (!user) {
      requests.inc({ endpoint: 'user', status: 404 });
      res.status(404).json({ error: `unknown user ${id}` });
      return;
    }
    requests.inc({ endpoint: 'user', status: 200 });
    res.json(userInfo(user));
  });

  return app;
}
