import { mkdirSync } from 'node:fs';
import type { Config } from '../../lib/config.ts';
import { writeMonitoringFiles } from '../../lib/monitoring/prometheus-config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { aptInstall, commandExists, log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';
import { getJson, monitoringDir } from './prometheus.ts';

const NAME = 'alertmanager';
export const ALERTMANAGER_BINARY = 'prometheus-alertmanager';
const BINARY = ALERTMANAGER_BINARY;

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
  const port = cfg.monitoring.alertmanagerPort;
  const base = `http://127.0.0.1:${port}`;
  const ready = async () => (await getJson(`${base}/-/ready`))?.status === 200;
  return {
    name: NAME,
    // Monitoring: the services run and answer without it.
    optional: true,
    async install() {
      if (!commandExists(BINARY)) aptInstall(NAME, [BINARY]);
    },
    async start() {
      const files = writeMonitoringFiles(cfg, monitoringDir());
      if (await ready()) {
        const r = await fetch(`${base}/-/reload`, { method: 'POST' }).catch(() => undefined);
        if (r && !r.ok) throw new Error(`alertmanager refused the regenerated ${files.alertmanager}: ${await r.text()}`);
        return;
      }
      if (await portOpen(port)) throw new Error(`port ${port} is taken by something that is not a ready Alertmanager`);
      mkdirSync(statePath('alertmanager'), { recursive: true });
      const pid = startDaemon(NAME, BINARY, alertmanagerArgs(files.alertmanager, statePath('alertmanager'), port));
      log(NAME, `started pid ${pid} on ${base}; mail via ${cfg.smtp.host}:${cfg.smtp.port} to ${cfg.smtp.to.join(', ')}`);
      await waitFor(NAME, ready, 30_000);
    },
    async stop() {
      await stopDaemon(NAME);
    },
    async status(): Promise<ComponentStatus> {
      if (!(await ready())) return { address: base, healthy: false, detail: (await portOpen(port)) ? 'something listens there but /-/ready does not answer 200' : 'not running (nothing listens there)' };
      const alerts = await getJson(`${base}/api/v2/alerts?active=true&silenced=false&inhibited=false`);
      const names: string[] = Array.isArray(alerts?.body) ? alerts.body.map((a: { labels: Record<string, string> }) => `${a.labels.alertname}${a.labels.service ? `(${a.labels.service})` : ''}`) : [];
      return { address: base, healthy: true, detail: `${names.length} alerts firing${names.length ? `: ${names.join(', ')}` : ''}; mail to ${cfg.smtp.to.join(', ')}` };
    },
  };
}
