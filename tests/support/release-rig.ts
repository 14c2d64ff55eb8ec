/**
 * A release on the real servers, cheaply: the Temporal dev server, Postgres (a scratch database),
 * the real gateway process in front of a contract stub as main, an SMTP server on loopback, and a
 * worker with the real activities on a task queue of its own. Nightly is a contract stub process
 * started and stopped through the slot runtime interface, and the offline gate passes: a real
 * inference slot needs vectors and a warm model (docker.test.ts and canary.e2e.test.ts cover those).
 *
 * Call startReleaseRig before anything loads the config: it sets the MARQUEE_* overrides (database,
 * task queue, ports, SMTP) that the worker's activities and this process then share.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { SMTPServer } from 'smtp-server';
import type { Config } from '../../lib/config.ts';
import type { Pool } from '../../lib/db.ts';
import type { SlotRuntime, SlotState } from '../../lib/runtime/slots.ts';
import { startGateway, type GatewayProc } from '../../testkit/inference.ts';
import { freePort } from '../../testkit/net.ts';
import { stop } from '../../testkit/processes.ts';
import { requireServer } from './servers.ts';
import { startStub, type StubProc } from './upstream.ts';

export interface ReleaseRig {
  tag: string;
  cfg: Config;
  pool: Pool;
  client: Client;
  gateway: GatewayProc;
  /** Every mail the SMTP server received, raw. */
  mails: string[];
  /** The nightly stub the runtime runs now, if any. */
  nightly(): (StubProc & { deployedVersion: string }) | undefined;
  routing(): Promise<{ nightly_percent: number; release_id: string | null; nightly_url: string | null }>;
  row(version: string): Promise<{ phase: string; decision: string | null; reason: string | null; ended_at: Date | null } | undefined>;
  /** Which slots answered `users` users through the gateway (its x-marquee-slot header). */
  servedBy(users: number): Promise<Set<string>>;
  stop(): Promise<void>;
}

/** Polls `probe` every 250 ms until it returns something truthy. */
export async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function startReleaseRig(name: string): Promise<ReleaseRig> {
  Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  const tag = randomBytes(3).toString('hex');
  const dbName = `marquee_${name.replace(/\W/g, '_')}_${tag}`;
  const ports = { gateway: await freePort(), nightly: await freePort(), smtp: await freePort() };
  Object.assign(process.env, {
    MARQUEE_POSTGRES_URL: `postgresql://marquee@127.0.0.1:5432/${dbName}`,
    MARQUEE_TEMPORAL_TASKQUEUE: `${name}-${tag}`,
    MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
    MARQUEE_SERVICES_INFERENCENIGHTLY_PORT: String(ports.nightly),
    MARQUEE_SMTP_HOST: '127.0.0.1',
    MARQUEE_SMTP_PORT: String(ports.smtp),
    MARQUEE_SMTP_SECURE: 'false',
    MARQUEE_SMTP_TO: `oncall@${name}.test`,
  });
  const { loadConfig } = await import('../../lib/config.ts');
  const { createPool, migrate } = await import('../../lib/db.ts');
  const { connectClient } = await import('../../lib/temporal.ts');
  const { createActivities, createActivityDeps } = await import('../../activities/index.ts');
  const { workflowsPath } = await import('../../workers/worker.ts');
  const cfg = loadConfig();
  await requireServer('postgres', 5432);
  await requireServer('temporal', Number(cfg.temporal.address.split(':').pop()));

  const admin = createPool(cfg, { database: 'postgres', max: 1 });
  await admin.query(`CREATE DATABASE "${dbName}"`);
  const pool = createPool(cfg, { max: 4 });
  await migrate(pool);
  const mails: string[] = [];
  const smtp = new SMTPServer({
    authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
    onData(stream, _s, cb) { let raw = ''; stream.on('data', (c: Buffer) => { raw += c.toString(); }); stream.on('end', () => { mails.push(raw); cb(); }); },
  });
  await new Promise<void>((r) => smtp.listen(ports.smtp, '127.0.0.1', r));
  const mainStub = await startStub(`main-${tag}`);
  const gateway = await startGateway(cfg, dbName, mainStub.url, {}, ports.gateway);
  const client = await connectClient(cfg);

  // Nightly as a contract stub process on the configured nightly port, as a runtime would run it.
  let nightly: (StubProc & { deployedVersion: string }) | undefined;
  const state = (): SlotState | undefined => nightly && {
    slot: 'nightly', version: nightly.deployedVersion, model: 'stub', image: null, running: nightly.proc.exitCode === null, url: nightly.url, id: String(nightly.proc.pid),
  };
  const runtime: SlotRuntime = {
    kind: 'process',
    async deploy(d) {
      if (d.slot !== 'nightly') throw new Error('the release rig runs nightly only');
      if (nightly) await stop(nightly.proc);
      nightly = Object.assign(await startStub(d.version, ports.nightly), { deployedVersion: d.version });
      return state()!;
    },
    async remove(slot) {
      if (slot !== 'nightly' || !nightly) return false;
      await stop(nightly.proc);
      nightly = undefined;
      return true;
    },
    async describe(slot) { return slot === 'nightly' ? state() : undefined; },
  };

  const deps = await createActivityDeps(cfg, { pool, runtime });
  const real = createActivities(deps);
  const connection = await NativeConnection.connect({ address: cfg.temporal.address });
  const worker = await Worker.create({
    connection, namespace: cfg.temporal.namespace, taskQueue: cfg.temporal.taskQueue, workflowsPath,
    activities: {
      ...real,
      offlineGate: async () => ({ passed: true, reason: 'not evaluated by the release rig', table: '', numbers: {} }),
      deploySlot: async (a: Parameters<typeof real.deploySlot>[0]) => {
        const s = await runtime.deploy({ slot: a.slot, version: a.version, model: a.model, image: null });
        return { url: s.url, id: s.id };
      },
    },
  });
  const workerRun = worker.run().finally(() => connection.close());

  return {
    tag, cfg, pool, client, gateway, mails,
    nightly: () => nightly,
    async routing() {
      return (await pool.query('SELECT nightly_percent, release_id, nightly_url FROM routing_state WHERE id = 1')).rows[0];
    },
    async row(version) {
      return (await pool.query('SELECT phase, decision, reason, ended_at FROM releases WHERE id = $1', [version])).rows[0];
    },
    async servedBy(users) {
      const slots = new Set<string>();
      for (let u = 0; u < users; u++) {
        const r = await fetch(`${gateway.url}/recommend/${u}`);
        await r.text();
        slots.add(String(r.headers.get('x-marquee-slot')));
      }
      return slots;
    },
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await workerRun.catch(() => undefined);
      await deps.temporal.connection.close();
      await client.connection.close();
      await runtime.remove('nightly');
      await Promise.all([stop(gateway.proc), stop(mainStub.proc)]);
      await new Promise<void>((r) => smtp.close(() => r()));
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      await admin.end();
    },
  };
}
