/**
 * HTTP for tests and benchmarks: a keep-alive client that measures latency and never throws on
 * network errors, a readiness wait, and a free loopback port.
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
