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

/** Where one base URL's calls go, parsed once: the request path builds no URL and looks up no agent by origin. */
interface Target { mod: typeof http | typeof https; agent: http.Agent; hostname: string; port: number; prefix: string }

/** Request headers per accept value, shared by every call (node copies them, never changes them). */
const acceptHeaders = new Map<string, Readonly<Record<string, string>>>();

export class Upstreams {
  private agents = new Map<string, http.Agent>();
  private targets = new Map<string, Target>();
  private inFlight = new Map<string, number>();

  constructor(private readonly opts: { maxSockets?: number } = {}) {}

  private targetFor(base: string): Target {
    let t = this.targets.get(base);
    if (t) return t;
    const u = new URL(base.endsWith('/') ? base : base + '/');
    let agent = this.agents.get(u.origin);
    if (!agent) {
      // noDelay is node's default for agents since v20 (no Nagle wait on small writes); said here because the hop depends on it.
      const options: http.AgentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: this.opts.maxSockets ?? 128, maxFreeSockets: 64, scheduling: 'lifo', timeout: 30_000, noDelay: true };
      agent = u.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
      this.agents.set(u.origin, agent);
    }
    const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
    t = { mod: u.protocol === 'https:' ? https : http, agent, hostname: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, prefix: u.pathname };
    // Bases come from the routing state (a handful); bound the map anyway against a stream of odd ones.
    if (this.targets.size >= 1000) this.targets.clear();
    this.targets.set(base, t);
    return t;
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
    const t = this.targetFor(base);
    let headers = acceptHeaders.get(accept);
    if (!headers) { headers = Object.freeze({ accept }); acceptHeaders.set(accept, headers); }
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
      const req = t.mod.request({ method: 'GET', hostname: t.hostname, port: t.port, path: t.prefix + path, agent: t.agent, headers }, (res) => {
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
        // Whole milliseconds: node keeps one timer list per distinct duration, and a fractional one made a new list per call.
      }, Math.max(1, Math.floor(timeoutMs)));
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
    this.targets.clear();
  }
}

/** What String.prototype.trim removes (ECMAScript WhiteSpace and LineTerminator), by char code. */
function isSpace(c: number): boolean {
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/**
 * Checks an answer against the recommendation contract: 200, one line of at most 20 comma-separated
 * ids, not JSON; throws so that the caller falls back instead of passing garbage on. One scan of
 * the body and no arrays: the ids themselves (answerIds) are only needed after the answer is sent.
 */
export function checkAnswer(a: UpstreamAnswer): void {
  const body = a.body;
  if (a.status !== 200) throw new UpstreamError('status', `status ${a.status}: ${body.split('\n')[0].slice(0, 120)}`);
  let end = body.length;
  if (end > 0 && body.charCodeAt(end - 1) === 10) end -= end > 1 && body.charCodeAt(end - 2) === 13 ? 2 : 1;
  let first = -1;
  let ids = 0;
  let inId = false;
  for (let i = 0; i < end; i++) {
    const c = body.charCodeAt(i);
    if (c === 10) throw new UpstreamError('bad_answer', 'answer has more than one line');
    if (isSpace(c)) continue;
    if (first < 0) first = c;
    if (c === 44) inId = false;
    else if (!inId) { inId = true; ids++; }
  }
  if (first === 123 || first === 91) throw new UpstreamError('bad_answer', 'answer is JSON, not a line of ids');
  if (ids > 20) throw new UpstreamError('bad_answer', `answer has ${ids} ids, more than 20`);
}

/** The ids of an answer that passed checkAnswer: its line split on commas, trimmed, empty ones left out. */
export function answerIds(body: string): string[] {
  const line = body.replace(/\r?\n$/, '');
  return line.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/** checkAnswer, then the ids. */
export function parseAnswer(a: UpstreamAnswer): string[] {
  checkAnswer(a);
  return answerIds(a.body);
}
