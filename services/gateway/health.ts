/**
 * Active health checks of the slots: GET <url>/healthz every second. A URL is marked down after
 * `failuresToDown` consecutive failed checks (one slow check under load must not empty a slot) or at
 * once when the gateway saw its connection refused (the process is gone); one good check marks it up.
 * Keyed by URL, not slot, so that a routing switch to a URL already known keeps its status.
 */
import type { Upstreams } from './upstream.ts';

export interface UrlHealth { up: boolean; failures: number; lastCheck?: string; lastError?: string; reportedVersion?: string; changedAt: string }

export class HealthChecker {
  private status = new Map<string, UrlHealth>();
  private timer?: NodeJS.Timeout;
  private checking = false;

  constructor(
    private readonly upstreams: Upstreams,
    /** Every routed URL once (RoutingEndpoints.all is de-duplicated already). */
    private readonly urls: () => readonly string[],
    private readonly opts: { intervalMs: number; timeoutMs: number; failuresToDown: number; onChange?: (url: string, up: boolean, why: string) => void },
  ) {}

  start(): void {
    void this.checkAll();
    this.timer = setInterval(() => void this.checkAll(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Unknown URLs count as up: they were checked when the admin API accepted them. */
  isUp(url: string): boolean {
    return this.status.get(url)?.up ?? true;
  }

  get(url: string): UrlHealth | undefined {
    return this.status.get(url);
  }

  private entry(url: string): UrlHealth {
    let h = this.status.get(url);
    if (!h) this.status.set(url, (h = { up: true, failures: 0, changedAt: new Date().toISOString() }));
    return h;
  }

  private set(url: string, up: boolean, why: string): void {
    const h = this.entry(url);
    if (h.up === up) return;
    h.up = up;
    h.changedAt = new Date().toISOString();
    this.opts.onChange?.(url, up, why);
  }

  /** Passive signal from the request path: a refused connection means nothing listens there now. */
  refused(url: string): void {
    const h = this.entry(url);
    h.failures = Math.max(h.failures, this.opts.failuresToDown);
    h.lastError = 'connection refused';
    this.set(url, false, 'connection refused');
  }

  async checkAll(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const urls = this.urls();
      await Promise.all(urls.map((u) => this.check(u)));
      for (const u of this.status.keys()) if (!urls.includes(u)) this.status.delete(u);
    } finally {
      this.checking = false;
    }
  }

  private async check(url: string): Promise<void> {
    const h = this.entry(url);
    h.lastCheck = new Date().toISOString();
    try {
      const a = await this.upstreams.get(url, 'healthz', this.opts.timeoutMs, 'application/json');
      if (a.status !== 200) throw new Error(`status ${a.status}`);
      try {
        const body = JSON.parse(a.body) as { model?: { version?: unknown } };
        if (typeof body.model?.version === 'string') h.reportedVersion = body.model.version;
      } catch { /* a healthz that is not JSON still says the process answers */ }
      h.failures = 0;
      h.lastError = undefined;
      this.set(url, true, 'health check passed');
    } catch (err) {
      h.failures++;
      h.lastError = (err as Error).message;
      if (h.failures >= this.opts.failuresToDown) this.set(url, false, `${h.failures} failed health checks: ${h.lastError}`);
    }
  }
}

/** One /healthz probe used to validate a URL before routing to it; returns the model version it reports. */
export async function probe(upstreams: Upstreams, url: string, timeoutMs: number): Promise<{ ok: true; version?: string } | { ok: false; reason: string }> {
  try {
    const a = await upstreams.get(url, 'healthz', timeoutMs, 'application/json');
    if (a.status !== 200) return { ok: false, reason: `${url}/healthz answered ${a.status}` };
    let version: string | undefined;
    try {
      const body = JSON.parse(a.body) as { model?: { version?: unknown } };
      if (typeof body.model?.version === 'string') version = body.model.version;
    } catch {
      return { ok: false, reason: `${url}/healthz did not answer JSON` };
    }
    return { ok: true, version };
  } catch (err) {
    return { ok: false, reason: `${url}/healthz does not answer: ${(err as Error).message}` };
  }
}
