import { mkdirSync } from 'node:fs';
import type { Config } from '../../lib/config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';
import { chromaBinary, ensureVenv } from './venv.ts';

/** Answers from the heartbeat endpoint (v2 on chroma 1.x, v1 on older servers). */
async function heartbeat(base: string): Promise<{ ok: boolean; detail: string }> {
  let last = 'no answer';
  for (const api of ['v2', 'v1']) {
    try {
      const res = await fetch(new URL(`/api/${api}/heartbeat`, base), { signal: AbortSignal.timeout(2000) });
      if (res.ok) return { ok: true, detail: `heartbeat ${api} ok` };
      last = `heartbeat ${api}: HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
    }
  }
  return { ok: false, detail: last };
}

export function chroma(cfg: Config): Component {
  const url = new URL(cfg.chroma.url);
  const host = url.hostname;
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return {
    name: 'chroma',
    install: () => ensureVenv(),
    async start() {
      if ((await heartbeat(cfg.chroma.url)).ok) return;
      if (await portOpen(port, host)) throw new Error(`port ${port} is taken by something that is not a Chroma server`);
      mkdirSync(statePath('chroma'), { recursive: true });
      // Telemetry off: it would try to reach the internet, which only adds noise and delay here.
      const env = { ...process.env, ANONYMIZED_TELEMETRY: 'False' };
      const pid = startDaemon('chroma', chromaBinary(), ['run', '--path', statePath('chroma'), '--host', host, '--port', String(port)], { env });
      log('chroma', `started pid ${pid} on ${cfg.chroma.url}`);
      await waitFor('chroma', async () => (await heartbeat(cfg.chroma.url)).ok, 60_000);
    },
    async stop() {
      await stopDaemon('chroma');
    },
    async status(): Promise<ComponentStatus> {
      if (!(await portOpen(port, host))) return { address: cfg.chroma.url, healthy: false, detail: 'not running (nothing listens there)' };
      const r = await heartbeat(cfg.chroma.url);
      return { address: cfg.chroma.url, healthy: r.ok, detail: r.detail };
    },
  };
}
