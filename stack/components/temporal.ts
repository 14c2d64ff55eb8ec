import { mkdirSync } from 'node:fs';
import { Connection } from '@temporalio/client';
import type { Config } from '../../lib/config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';
import { ensureVenv, temporalBinary } from './venv.ts';

/**
 * Search attributes the release workflows set, registered at start so later code can upsert them
 * without a separate `operator search-attribute create` step. start-dev ignores ones already in the DB.
 */
const searchAttributes = ['MarqueePhase=Keyword', 'MarqueeVersion=Keyword'];

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** True when the frontend answers a namespace describe, i.e. the server is past its boot. */
async function namespaceReady(cfg: Config): Promise<{ ok: boolean; detail: string }> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address: cfg.temporal.address, connectTimeout: '2s' });
    const res = await connection.workflowService.describeNamespace({ namespace: cfg.temporal.namespace });
    return { ok: true, detail: `namespace ${res.namespaceInfo?.name ?? cfg.temporal.namespace}, UI http://127.0.0.1:${cfg.temporal.uiPort}` };
  } catch (err) {
    return { ok: false, detail: (err as Error).message.split('\n')[0] };
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

export function temporal(cfg: Config): Component {
  const { host, port } = splitAddress(cfg.temporal.address);
  return {
    name: 'temporal',
    install: () => ensureVenv(),
    async start() {
      if ((await namespaceReady(cfg)).ok) return;
      if (await portOpen(port, host)) throw new Error(`port ${port} is taken by something that is not a Temporal server`);
      mkdirSync(statePath('temporal'), { recursive: true });
      const args = [
        'server', 'start-dev',
        '--ip', host,
        '--port', String(port),
        '--ui-port', String(cfg.temporal.uiPort),
        // Prometheus scrapes it (a random port otherwise).
        '--metrics-port', String(cfg.temporal.metricsPort),
        // SQLite file so workflows (and running releases) survive a restart of the stack.
        '--db-filename', statePath('temporal', 'temporal.db'),
        '--namespace', cfg.temporal.namespace,
        '--log-level', 'warn',
        // No network beyond the package registries here, and the UI would otherwise try to fetch news.
        '--ui-disable-news-fetch',
        ...searchAttributes.flatMap((sa) => ['--search-attribute', sa]),
      ];
      const pid = startDaemon('temporal', temporalBinary(), args);
      log('temporal', `started pid ${pid} on ${cfg.temporal.address}`);
      await waitFor('temporal', async () => (await namespaceReady(cfg)).ok, 90_000);
    },
    async stop() {
      await stopDaemon('temporal');
    },
    async status(): Promise<ComponentStatus> {
      if (!(await portOpen(port, host))) return { address: cfg.temporal.address, healthy: false, detail: 'not running (nothing listens there)' };
      const r = await namespaceReady(cfg);
      return { address: cfg.temporal.address, healthy: r.ok, detail: r.detail };
    },
  };
}
