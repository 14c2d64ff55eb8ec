import express from 'express';
import type { Server } from 'node:http';
import type { Registry } from './metrics.ts';

/** An express app with the /healthz and /metrics every Marquee service serves. */
export function serviceApp(opts: { registry: Pick<Registry, 'contentType' | 'render'>; health: () => Promise<Record<string, unknown>> | Record<string, unknown> }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', async (_req, res) => {
    try {
      const body = await opts.health();
      res.status(body.status === 'ok' ? 200 : 503).json(body);
    } catch (err) {
      res.status(503).json({ status: 'error', error: (err as Error).message });
    }
  });
  app.get('/metrics', async (_req, res) => {
    try {
      res.type(opts.registry.contentType).send(await opts.registry.render());
    } catch (err) {
      res.status(500).type('text/plain').send(`metrics: ${(err as Error).message}\n`);
    }
  });
  return app;
}

export function listen(app: express.Express, port: number, host = '127.0.0.1'): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
    server.once('error', reject);
  });
}
