/**
 * The platform's info API: GET /movie/<id> and GET /user/<id> answer the metadata of
 * ARCHITECTURE.md as JSON (404 with a message for an id the world does not have), beside the
 * /healthz and /metrics every service serves. The invented world answers its own metadata, the
 * replay world the data set's.
 */
import type express from 'express';
import { serviceApp } from '../../lib/http.ts';
import { Registry } from '../../lib/metrics.ts';
import { gitCommit, packageVersion } from '../../lib/version.ts';
import type { ReplayWorld } from './replay-world.ts';
import { movieInfo, userInfo, type World } from './world.ts';

/** What the API serves, whichever world is behind it. */
export interface InfoSource {
  /** Fields for /healthz that say which world this is. */
  describe(): Record<string, unknown>;
  movie(id: string): object | undefined;
  user(id: number): object | undefined;
}

export function inventedInfo(world: World): InfoSource {
  return {
    describe: () => ({ world: 'invented', seed: world.seed, movies: world.movieCount, users: world.userCount }),
    movie: (id) => { const m = world.movie(id); return m && movieInfo(m); },
    user: (id) => { const u = world.user(id); return u && userInfo(u); },
  };
}

export function replayInfo(world: ReplayWorld): InfoSource {
  return {
    describe: () => ({ world: world.name, movies: world.movieCount, users: world.userCount, userOffset: world.userOffset }),
    movie: (id) => world.movie(id),
    user: (id) => world.user(id),
  };
}

export interface ApiOptions {
  registry?: Registry;
  /** Extra fields for /healthz (traffic progress, say). */
  health?: () => Record<string, unknown>;
}

export function createApi(world: World | InfoSource, opts: ApiOptions = {}): express.Express {
  const info = 'describe' in world ? world : inventedInfo(world);
  const registry = opts.registry ?? new Registry();
  const requests = registry.counter('simulator_api_requests_total', 'Info API requests by endpoint and status', ['endpoint', 'status']);
  const app = serviceApp({
    registry,
    health: () => ({
      status: 'ok',
      service: 'simulator',
      version: packageVersion,
      commit: gitCommit(),
      ...info.describe(),
      ...opts.health?.(),
    }),
  });

  app.get('/movie/:id', (req, res) => {
    const id = req.params.id;
    const movie = info.movie(id);
    if (!movie) {
      requests.inc({ endpoint: 'movie', status: 404 });
      res.status(404).json({ error: `unknown movie ${id}` });
      return;
    }
    requests.inc({ endpoint: 'movie', status: 200 });
    res.json(movie);
  });

  app.get('/user/:id', (req, res) => {
    const id = req.params.id;
    // Digits only: "12abc", "1e3" or " 7" are not user ids, even if Number() would take them.
    const user = /^\d{1,9}$/.test(id) ? info.user(Number(id)) : undefined;
    if (!user) {
      requests.inc({ endpoint: 'user', status: 404 });
      res.status(404).json({ error: `unknown user ${id}` });
      return;
    }
    requests.inc({ endpoint: 'user', status: 200 });
    res.json(user);
  });

  return app;
}
