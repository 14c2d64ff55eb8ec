import type { Config } from './config.ts';
import type { RoutingPatch, RoutingState as Routing } from './routing.ts';

// The admin API's shapes (GET answers the full state, PUT takes a patch).
export type { RoutingPatch, RoutingState as Routing } from './routing.ts';

/** The gateway's admin API, as workflows' activities and the CLI use it. */
export function gatewayAdmin(cfg: Config, base = `http://127.0.0.1:${cfg.services.gateway.port}`) {
  const headers = (actor: string) => ({
    authorization: `Bearer ${cfg.services.gateway.adminToken}`,
    'content-type': 'application/json',
    'x-marquee-actor': actor,
  });
  async function call<T>(method: string, path: string, actor: string, body?: unknown): Promise<T> {
    const res = await fetch(`${base}/admin${path}`, { method, headers: headers(actor), body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(15_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`gateway ${method} /admin${path} answered ${res.status}: ${text.trim()}`);
    return JSON.parse(text) as T;
  }
  return {
    get: (actor = 'marquee') => call<Routing>('GET', '/routing', actor),
    put: (patch: RoutingPatch, actor: string) => call<{ changed: boolean; routing: Routing }>('PUT', '/routing', actor, patch),
  };
}
