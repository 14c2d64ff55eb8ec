import type { Config } from '../../lib/config.ts';
import type { Component } from '../component.ts';
import { getJson, monitoringDaemon } from './monitoring-daemon.ts';

export const ALERTMANAGER_BINARY = 'prometheus-alertmanager';

/** How the stack (and the monitoring test) runs Alertmanager. */
export function alertmanagerArgs(configFile: string, dataDir: string, port: number): string[] {
  return [
    `--config.file=${configFile}`,
    `--storage.path=${dataDir}`,
    `--web.listen-address=127.0.0.1:${port}`,
    // The link in each mail (the machine's hostname otherwise, which a reader may not resolve).
    `--web.external-url=http://127.0.0.1:${port}`,
    // One node: no gossip port (9094 by default, on every interface).
    '--cluster.listen-address=',
  ];
}

/** Debian's prometheus-alertmanager on loopback, mailing through temporal.yaml's smtp (the stack's mail sink by default). */
export function alertmanager(cfg: Config): Component {
  return monitoringDaemon(cfg, {
    name: 'alertmanager',
    binary: ALERTMANAGER_BINARY,
    title: 'Alertmanager',
    port: cfg.monitoring.alertmanagerPort,
    configOf: (files) => files.alertmanager,
    args: alertmanagerArgs,
    started: () => `mail via ${cfg.smtp.host}:${cfg.smtp.port} to ${cfg.smtp.to.join(', ')}`,
    readyTimeoutMs: 30_000,
    async detail(base) {
      const alerts = await getJson(`${base}/api/v2/alerts?active=true&silenced=false&inhibited=false`);
      const names: string[] = Array.isArray(alerts?.body) ? alerts.body.map((a: { labels: Record<string, string> }) => `${a.labels.alertname}${a.labels.service ? `(${a.labels.service})` : ''}`) : [];
      return `${names.length} alerts firing${names.length ? `: ${names.join(', ')}` : ''}; mail to ${cfg.smtp.to.join(', ')}`;
    },
  });
}
