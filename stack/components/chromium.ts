import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Component, ComponentStatus } from '../component.ts';
import { aptInstall } from '../proc.ts';

/** Where Debian's `chromium` package puts the browser; the report and dashboard tests drive it with puppeteer-core. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Debian's headless-capable Chromium: not a server, only a binary the browser tests need (the
 * report's charts and the dashboard are checked in a real browser). Nothing to start or stop.
 */
export function chromium(): Component {
  return {
    name: 'chromium',
    async install() {
      if (!existsSync(CHROMIUM_PATH)) aptInstall('chromium', ['chromium', 'fonts-dejavu-core']);
    },
    async start() { /* a binary, started by each test */ },
    async stop() { /* nothing runs */ },
    async status(): Promise<ComponentStatus> {
      if (!existsSync(CHROMIUM_PATH)) return { address: CHROMIUM_PATH, healthy: false, detail: 'not installed (apt package chromium)' };
      const r = spawnSync(CHROMIUM_PATH, ['--version'], { encoding: 'utf8', timeout: 20_000 });
      const version = (r.stdout ?? '').trim();
      return { address: CHROMIUM_PATH, healthy: r.status === 0, detail: r.status === 0 ? version : `--version failed: ${(r.stderr ?? '').trim().slice(0, 200)}` };
    },
  };
}
