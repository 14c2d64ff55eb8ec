import net from 'node:net';
import type { Config } from '../../lib/config.ts';

/**
 * Fails (never skips) when a server the test needs is not answering, and says how to start it.
 * `npm test` starts the whole stack first; a single test file run by hand needs `npm run stack -- up`.
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

type StackServer = 'postgres' | 'kafka' | 'temporal' | 'chroma';

/** The stack servers a test needs, at the addresses the (test's) config names. */
export async function requireStack(cfg: Config, ...names: StackServer[]): Promise<void> {
  for (const name of names) {
    const { hostname, port } = stackAddress(cfg, name);
    await requireServer(name, port, hostname);
  }
}

function stackAddress(cfg: Config, name: StackServer): { hostname: string; port: number } {
  const hostPort = (s: string, fallback: number) => {
    const [hostname, port] = s.split(':');
    return { hostname, port: Number(port || fallback) };
  };
  switch (name) {
    case 'postgres': { const u = new URL(cfg.postgres.url); return { hostname: u.hostname, port: Number(u.port || 5432) }; }
    case 'chroma': { const u = new URL(cfg.chroma.url); return { hostname: u.hostname, port: Number(u.port || 8000) }; }
    case 'kafka': return hostPort(cfg.kafka.brokers[0], 9092);
    case 'temporal': return hostPort(cfg.temporal.address, 7233);
  }
}
