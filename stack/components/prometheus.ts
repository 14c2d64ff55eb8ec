import { mkdirSync } from 'node:fs';
import type { Config } from '../../lib/config.ts';
import { writeMonitoringFiles } from '../../lib/monitoring/prometheus-config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { aptInstall, commandExists, log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

const NAME = 'prometheus';

/** GET on a loopback HTTP server; undefined when nothing answers. */
export async function getJson(url: string, timeoutMs = 2000): Promise<{ status: number; body: any } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: unknown = text;
    try { body = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body };
  } catch {
    return undefined;
  }
}

/** The generated configs (both monitoring components write the same set, so either can start first). */
export const monitoringDir = (): string => statePath('monitoring');

/** How the stack (and the monitoring test) runs Prometheus. */
export function prometheusArgs(configFile: string, dataDir: string, port: number): string[] {
  return [
    `--config.file=${configFile}`,
    `--storage.tsdb.path=${dataDir}`,
    '--storage.tsdb.retention.time=15d',
    `--web.listen-address=127.0.0.1:${port}`,
    // POST /-/reload after the config is regenerated.
    '--web.enable-lifecycle',
  ];
}

/**
 * Debian's prometheus (its web UI files live under /usr/share/prometheus, so the package is
 * installed rather than the binary copied), run by the stack on loopback with the project's
 * generated config and its data under .marquee/prometheus.
 */
export function prometheus(cfg: Config): Component {
  const port = cfg.monitoring.prometheusPort;
  const base = `http://127.0.0.1:${port}`;
  const ready = async () => (await getJson(`${base}/-/ready`))?.status === 200;
  return {
    name: NAME,
    // Monitoring: the services run and answer without it.
    optional: true,
    async install() {
      if (!commandExists('prometheus')) aptInstall(NAME, ['prometheus']);
    },
    async start() {
      const files = writeMonitoringFiles(cfg, monitoringDir());
      if (await ready()) {
        // Already ours and running: pick up a changed temporal.yaml without losing its data.
        const r = await fetch(`${base}/-/reload`, { method: 'POST' }).catch(() => undefined);
        if (r && !r.ok) throw new Error(`prometheus refused the regenerated ${files.prometheus}: ${await r.text()}`);
        return;
      }
      if (await portOpen(port)) throw new Error(`port ${port} is taken by something that is not a ready Prometheus`);
      mkdirSync(statePath('prometheus'), { recursive: true });
      const pid = startDaemon(NAME, 'prometheus', prometheusArgs(files.prometheus, statePath('prometheus'), port));
      log(NAME, `started pid ${pid} on ${base}; config ${files.prometheus}`);
      await waitFor(NAME, ready, 60_000);
    },
    async stop() {
      await stopDaemon(NAME);
    },
    async status(): Promise<ComponentStatus> {
      if (!(await ready())) return { address: base, healthy: false, detail: (await portOpen(port)) ? 'something listens there but /-/ready does not answer 200' : 'not running (nothing listens there)' };
      const t = await getJson(`${base}/api/v1/targets?state=active`);
      const active: { health: string; labels: { service?: string } }[] = t?.body?.data?.activeTargets ?? [];
      if (active.length === 0) return { address: base, healthy: true, detail: `no targets yet (they appear within ${cfg.monitoring.scrapeInterval} of a start)` };
      const down = active.filter((x) => x.health !== 'up').map((x) => x.labels.service ?? '?');
      return { address: base, healthy: true, detail: `${active.length - down.length}/${active.length} targets up${down.length ? ` (down: ${down.join(', ')})` : ''}` };
    },
  };
}
