import { mkdirSync } from 'node:fs';
import type { Config } from '../../lib/config.ts';
import { writeMonitoringFiles } from '../../lib/monitoring/prometheus-config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { aptInstall, commandExists, log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

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

type MonitoringFiles = ReturnType<typeof writeMonitoringFiles>;

export interface MonitoringDaemonSpec {
  name: string;
  /** Debian package and binary (the same name for both Prometheus tools). */
  binary: string;
  /** Shown in errors, e.g. "Prometheus". */
  title: string;
  port: number;
  /** Which generated file is this daemon's config. */
  configOf(files: MonitoringFiles): string;
  args(configFile: string, dataDir: string, port: number): string[];
  /** Logged after a start. */
  started(base: string, files: MonitoringFiles): string;
  readyTimeoutMs: number;
  /** What status says of a ready daemon. */
  detail(base: string): Promise<string>;
}

/**
 * A Prometheus-family daemon run by the stack: Debian-packaged, configured from the files
 * generated out of temporal.yaml, reloaded in place (keeping its data) when already running.
 */
export function monitoringDaemon(cfg: Config, spec: MonitoringDaemonSpec): Component {
  const base = `http://127.0.0.1:${spec.port}`;
  const ready = async () => (await getJson(`${base}/-/ready`))?.status === 200;
  return {
    name: spec.name,
    // Monitoring: the services run and answer without it.
    optional: true,
    async install() {
      if (!commandExists(spec.binary)) aptInstall(spec.name, [spec.binary]);
    },
    async start() {
      const files = writeMonitoringFiles(cfg, monitoringDir());
      if (await ready()) {
        // Already ours and running: pick up a changed temporal.yaml without losing its data.
        const r = await fetch(`${base}/-/reload`, { method: 'POST' }).catch(() => undefined);
        if (r && !r.ok) throw new Error(`${spec.name} refused the regenerated ${spec.configOf(files)}: ${await r.text()}`);
        return;
      }
      if (await portOpen(spec.port)) throw new Error(`port ${spec.port} is taken by something that is not a ready ${spec.title}`);
      mkdirSync(statePath(spec.name), { recursive: true });
      const pid = startDaemon(spec.name, spec.binary, spec.args(spec.configOf(files), statePath(spec.name), spec.port));
      log(spec.name, `started pid ${pid} on ${base}; ${spec.started(base, files)}`);
      await waitFor(spec.name, ready, spec.readyTimeoutMs);
    },
    async stop() {
      await stopDaemon(spec.name);
    },
    async status(): Promise<ComponentStatus> {
      if (!(await ready())) return { address: base, healthy: false, detail: (await portOpen(spec.port)) ? 'something listens there but /-/ready does not answer 200' : 'not running (nothing listens there)' };
      return { address: base, healthy: true, detail: await spec.detail(base) };
    },
  };
}
