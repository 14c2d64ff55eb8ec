/**
 * HTTP to the inference slots over pooled keep-alive connections, one agent per origin, with a hard
 * deadline per call and an optional AbortSignal (the caller's own deadline: an aborted call's
 * socket is destroyed at once, so it neither holds a connection nor completes late). A routing change to a new URL simply starts using (or creating) that origin's
 * agent; requests in flight on the old one finish on their own, so nothing is drained.
 */
import http from 'node:http';
import https from 'node:https';

export class UpstreamError extends Error {
  constructor(readonly kind: 'timeout' | 'aborted' | 'refused' | 'error' | 'status' | 'bad_answer', message: string) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamAnswer { status: number; body: string; contentType: string; ms: number; outcome?: string }

const MAX_BODY = 64 * 1024;

export class Upstreams {
  private agents = new Map<string, http.Agent>();
  private inFlight = new Map<string, number>();

  constructor(private readonly opts: { maxSockets?: number } = {}) {}

  private agentFor(u: URL): http.Agent {
    let agent = this.agents.get(u.origin);
    if (!agent) {
      const options: http.AgentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: this.opts.maxSockets ?? 128, maxFreeSockets: 64, scheduling: 'lifo', timeout: 30_000 };
      agent = u.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
      this.agents.set(u.origin, agent);
    }
    return agent;
  }

  /**
   * GET base+path within timeoutMs. A keep-alive socket the server closed meanwhile (a restarted
   * slot) fails with ECONNRESET on reuse: that call is retried once on a fresh socket if time remains.
   * Once `signal` aborts, the call fails with kind `aborted` and its request is destroyed.
   */
  async get(base: string, path: string, timeoutMs: number, accept = 'text/plain', signal?: AbortSignal): Promise<UpstreamAnswer> {
    const t0 = performance.now();
    this.inFlight.set(base, (this.inFlight.get(base) ?? 0) + 1);
    try {
      return await this.once(base, path, timeoutMs, accept, signal);
    } catch (err) {
      const e = err as Error & { reused?: boolean; code?: string };
      const left = timeoutMs - (performance.now() - t0);
      if (e.reused && (e.code === 'ECONNRESET' || e.code === 'EPIPE') && left > 5 && !signal?.aborted) return this.once(base, path, left, accept, signal);
      throw err;
    } finally {
      const n = (this.inFlight.get(base) ?? 1) - 1;
      if (n > 0) this.inFlight.set(base, n);
      else this.inFlight.delete(base);
    }
  }

  /** Calls to `base` not yet answered (health checks included). */
  pending(base: string): number {
    return this.inFlight.get(base) ?? 0;
  }

  private once(base: string, path: string, timeoutMs: number, accept: string, signal?: AbortSignal): Promise<UpstreamAnswer> {
    const t0 = performance.now();
    if (signal?.aborted) return Promise.reject(new UpstreamError('aborted', 'aborted before the call'));
    const u = new URL(path, base.endsWith('/') ? base : base + '/');
    return new Promise<UpstreamAnswer>((resolve, reject) => {
      let settled = false;
      const done = (err: Error | undefined, answer?: UpstreamAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(answer!);
      };
      const onAbort = () => {
        done(new UpstreamError('aborted', `aborted after ${Math.round(performance.now() - t0)} ms`));
        req.destroy();
      };
      const mod = u.protocol === 'https:' ? https : http;
      const req = mod.request(u, { method: 'GET', agent: this.agentFor(u), headers: { accept } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) { req.destroy(); done(new UpstreamError('bad_answer', `answer larger than ${MAX_BODY} bytes`)); return; }
          chunks.push(c);
        });
        res.on('end', () => done(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), contentType: String(res.headers['content-type'] ?? ''), ms: performance.now() - t0, outcome: res.headers['x-marquee-outcome'] as string | undefined }));
        res.on('error', (err) => done(new UpstreamError('error', err.message)));
      });
      const timer = setTimeout(() => {
        done(new UpstreamError('timeout', `no answer within ${Math.round(timeoutMs)} ms`));
        req.destroy();
      }, Math.max(1, timeoutMs));
      req.on('error', (err: Error & { code?: string }) => {
        const wrapped = new UpstreamError(err.code === 'ECONNREFUSED' ? 'refused' : 'error', `${err.code ?? ''} ${err.message}`.trim()) as UpstreamError & { reused?: boolean; code?: string };
        wrapped.reused = req.reusedSocket;
        wrapped.code = err.code;
        done(wrapped);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end();
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

/**
 * Checks an answer against the recommendation contract: 200, one line of at most 20 comma-separated
 * ids. Returns the ids, or throws so that the caller falls back instead of passing garbage on.
 */
export function parseAnswer(a: UpstreamAnswer): string[] {
  if (a.status !== 200) throw new UpstreamError('status', `status ${a.status}: ${a.body.split('\n')[0].slice(0, 120)}`);
  const line = a.body.replace(/\r?\n$/, '');
  if (line.includes('\n')) throw new UpstreamError('bad_answer', 'answer has more than one line');
  if (line.trimStart().startsWith('{') || line.trimStart().startsWith('[')) throw new UpstreamError('bad_answer', 'answer is JSON, not a line of ids');
  const ids = line.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (ids.length > 20) throw new UpstreamError('bad_answer', `answer has ${ids.length} ids, more than 20`);
  return ids;
}
