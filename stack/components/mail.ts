import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { projectRoot, type Config } from '../../lib/config.ts';
import type { Component, ComponentStatus } from '../component.ts';
import { log, portOpen, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

const loopback = (host: string) => host === '127.0.0.1' || host === 'localhost' || host === '::1';

/** A local SMTP server keeping mails as files (stack/mail-sink.ts), unless temporal.yaml names a real relay. */
export function mail(cfg: Config): Component {
  const { host, port } = cfg.smtp;
  const address = `smtp://${host}:${port}`;
  const messages = () => (existsSync(statePath('mail')) ? readdirSync(statePath('mail')).filter((f) => f.endsWith('.eml')).length : 0);
  return {
    name: 'mail',
    async install() { /* smtp-server is an npm dependency */ },
    async start() {
      if (!loopback(host) || (await portOpen(port, host))) return;
      const pid = startDaemon('mail', process.execPath, ['--import', 'tsx', path.join(projectRoot, 'stack', 'mail-sink.ts')], { cwd: projectRoot });
      log('mail', `started pid ${pid} on ${address}; messages go to ${statePath('mail')}`);
      await waitFor('mail', () => portOpen(port, host), 30_000);
    },
    async stop() {
      await stopDaemon('mail');
    },
    async status(): Promise<ComponentStatus> {
      if (!loopback(host)) return { address, healthy: await portOpen(port, host, 3000), detail: 'the relay named in temporal.yaml' };
      if (!(await portOpen(port, host))) return { address, healthy: false, detail: 'not running (nothing listens there)' };
      return { address, healthy: true, detail: `${messages()} messages in ${statePath('mail')}` };
    },
  };
}
