import type { Config } from '../../lib/config.ts';
import { requireServer } from '../../testkit/net.ts';

export { requireServer };

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
