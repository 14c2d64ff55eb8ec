/**
 * HTTP for tests and benchmarks: a keep-alive client that measures latency and never throws on
 * network errors, a readiness wait, a free loopback port, and a check that a server answers at all.
 */
import http from 'node:http';
import net from 'node:net';

// Unbounded sockets: a load test must not queue requests in its own client and blame the server.
export const clientAgent = new http.Agent({ keepAlive: true });

export interface Reply { status: number; body: string; headers: http.IncomingHttpHeaders; ms: number; error?: string }

/** GET/PUT with a client-side timeout; network errors come back as status 0 with `error`, never thrown. */
export function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number; agent?: http.Agent } = {}): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: opts.agent ?? clientAgent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, ms: performance.now() - t0 }));
      res.on('error', (err) => resolve({ status: 0, body: '', headers: {}, ms: performance.now() - t0, error: err.message }));
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => resolve({ status: 0, body: '', headers: {}, ms: performance.now() - t0, error: err.message }));
    req.end(opts.body);
  });
}

export async function waitForHttp(url: string, timeoutMs = 30_000, ok: (r: Reply) => boolean = (r) => r.status === 200, alive?: () => boolean): Promise<Reply> {
  const deadline = Date.now() + timeoutMs;
  let last: Reply | undefined;
  while (Date.now() < deadline) {
    if (alive && !alive()) throw new Error(`the process behind ${url} exited`);
    last = await request(url, { timeoutMs: 2000 });
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (last: ${last?.status} ${last?.error ?? last?.body.slice(0, 200)})`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * Fails (never skips) when a server a test or benchmark needs is not answering, and says how to
 * start it. `npm test` starts the whole stack first; a single file run by hand needs `npm run stack -- up`.
 */
export async function requireServer(name: string, port: number, host = '127.0.0.1'): Promise<void> {
  const open = await new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(2000, () => { s.destroy(); resolve(false); });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (!open) throw new Error(`${name} is not answering on ${host}:${port}; start the stack with \`npm run stack -- up\` (npm test does this)`);
}

const portFree = (port: number) => new Promise<boolean>((resolve) => {
  const s = net.createServer();
  s.once('error', () => resolve(false));
  s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
});

/**
 * A free port p such that p + step·k is free too for every k < count: where a slot's replicas will
 * listen (replica k of a slot on its port + REPLICA_PORT_STEP·k).
 */
export async function freePortSpaced(step: number, count: number): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p + step * (count - 1) > 65535) continue;
    let ok = true;
    for (let k = 1; k < count && ok; k++) ok = await portFree(p + step * k);
    if (ok) return p;
  }
  throw new Error(`no free port with ${count - 1} more free at steps of ${step}`);
}
