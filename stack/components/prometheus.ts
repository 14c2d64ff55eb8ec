import type { Config } from '../../lib/config.ts';
import type { Component } from '../component.ts';
import { getJson, monitoringDaemon } from './monitoring-daemon.ts';

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
  return monitoringDaemon(cfg, {
    name: 'prometheus',
    binary: 'prometheus',
    title: 'Prometheus',
    port: cfg.monitoring.prometheusPort,
    configOf: (files) => files.prometheus,
    args: prometheusArgs,
    started: (_base, files) => `config ${files.prometheus}`,
    readyTimeoutMs: 60_000,
    async detail(base) {
      const t = await getJson(`${base}/api/v1/targets?state=active`);
      const active: { health: string; labels: { service?: string } }[] = t?.body?.data?.activeTargets ?? [];
      if (active.length === 0) return `no targets yet (they appear within ${cfg.monitoring.scrapeInterval} of a start)`;
      const down = active.filter((x) => x.health !== 'up').map((x) => x.labels.service ?? '?');
      return `${active.length - down.length}/${active.length} targets up${down.length ? ` (down: ${down.join(', ')})` : ''}`;
    },
  });
}
