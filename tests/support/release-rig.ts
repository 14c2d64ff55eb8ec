/**
 * A release on the real servers, cheaply: the Temporal dev server, Postgres (a scratch database),
 * the real gateway process in front of a contract stub as main, an SMTP server on loopback, and a
 * worker with the real activities on a task queue of its own. Nightly is a contract stub process
 * started and stopped through the slot runtime interface, and the offline gate passes: a real
 * inference slot needs vectors and a warm model (docker.test.ts and canary.e2e.test.ts cover those).
 *
 * `await releaseRig(name)` at the top of a test file, before anything loads the config: it sets the
 * MARQUEE_* overrides (database, task queue, ports, SMTP) that the worker's activities, CLI child
 * processes and the test then share. `start()` in beforeAll, `stop()` in afterAll (it stops what
 * started, also after a failed start).
 */
import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { Config } from '../../lib/config.ts';
import type { Pool } from '../../lib/db.ts';
import type { SlotRuntime, SlotState } from '../../lib/runtime/slots.ts';
import { startGateway, type GatewayProc } from '../../testkit/inference.ts';
import { catchMail, type MailCatcher } from '../../testkit/mail.ts';
import { freePort } from '../../testkit/net.ts';
import { stop } from '../../testkit/processes.ts';
import { requireStack } from './servers.ts';
import { startStub, type StubProc } from './upstream.ts';

export type NightlyStub = StubProc & { deployedVersion: string };

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

export async function releaseRig(name: string): Promise<ReleaseRig> {
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
  return new ReleaseRig(loadConfig(), tag, dbName, ports);
}

export class ReleaseRig {
  pool!: Pool;
  client!: Client;
  gateway!: GatewayProc;
  /** Every mail the SMTP server received, raw. */
  readonly mails: string[] = [];
  /** The slot runtime the worker deploys nightly with: a contract stub on the nightly port. */
  readonly runtime: SlotRuntime;
  private nightlyStub: NightlyStub | undefined;
  private mainStub?: StubProc;
  private smtp?: MailCatcher;
  private admin?: Pool;
  private worker?: Worker;
  private workerRun?: Promise<void>;
  private closeDeps?: () => Promise<void>;

  constructor(readonly cfg: Config, readonly tag: string, readonly dbName: string, private readonly ports: { gateway: number; nightly: number; smtp: number }) {
    const state = (): SlotState | undefined => this.nightlyStub && {
      slot: 'nightly', version: this.nightlyStub.deployedVersion, model: 'stub', image: null,
      running: this.nightlyStub.proc.exitCode === null, url: this.nightlyStub.url, id: String(this.nightlyStub.proc.pid),
    };
    this.runtime = {
      kind: 'process',
      deploy: async (d) => {
        if (d.slot !== 'nightly') throw new Error('the release rig runs nightly only');
        if (this.nightlyStub) await stop(this.nightlyStub.proc);
        this.nightlyStub = Object.assign(await startStub(d.version, ports.nightly), { deployedVersion: d.version });
        return state()!;
      },
      remove: async (slot) => {
        if (slot !== 'nightly' || !this.nightlyStub) return false;
        await stop(this.nightlyStub.proc);
        this.nightlyStub = undefined;
        return true;
      },
      describe: async (slot) => (slot === 'nightly' ? state() : undefined),
    };
  }

  /** The nightly stub the runtime runs now, if any. */
  nightly(): NightlyStub | undefined {
    return this.nightlyStub;
  }

  async start(): Promise<void> {
    const { cfg } = this;
    const { createPool, migrate } = await import('../../lib/db.ts');
    const { connectClient } = await import('../../lib/temporal.ts');
    const { createActivities, createActivityDeps } = await import('../../activities/index.ts');
    const { workflowsPath } = await import('../../workers/worker.ts');
    await requireStack(cfg, 'postgres', 'temporal');

    this.admin = createPool(cfg, { database: 'postgres', max: 1 });
    await this.admin.query(`CREATE DATABASE "${this.dbName}"`);
    this.pool = createPool(cfg, { max: 4 });
    await migrate(this.pool);
    this.smtp = await catchMail(this.ports.smtp, { into: this.mails });
    this.mainStub = await startStub(`main-${this.tag}`);
    await this.startGateway();
    this.client = await connectClient(cfg);

    const deps = await createActivityDeps(cfg, { pool: this.pool, runtime: this.runtime });
    this.closeDeps = () => deps.temporal.connection.close();
    const real = createActivities(deps);
    const connection = await NativeConnection.connect({ address: cfg.temporal.address });
    this.worker = await Worker.create({
      connection, namespace: cfg.temporal.namespace, taskQueue: cfg.temporal.taskQueue, workflowsPath,
      activities: {
        ...real,
        offlineGate: async () => ({ passed: true, reason: 'not evaluated in this test', table: '', numbers: {} }),
        deploySlot: async (a: Parameters<typeof real.deploySlot>[0]) => {
          const s = await this.runtime.deploy({ slot: a.slot, version: a.version, model: a.model, image: null });
          return { url: s.url, id: s.id };
        },
      },
    });
    this.workerRun = this.worker.run().finally(() => connection.close());
  }

  /** (Re)starts the gateway on its configured port, in front of the main stub. */
  async startGateway(): Promise<GatewayProc> {
    this.gateway = await startGateway(this.cfg, this.dbName, this.mainStub!.url, {}, this.ports.gateway);
    return this.gateway;
  }

  async routing(): Promise<{ nightly_percent: number; release_id: string | null; nightly_url: string | null }> {
    return (await this.pool.query('SELECT nightly_percent, release_id, nightly_url FROM routing_state WHERE id = 1')).rows[0];
  }

  async row(version: string): Promise<{ phase: string; decision: string | null; reason: string | null; ended_at: Date | null } | undefined> {
    return (await this.pool.query('SELECT phase, decision, reason, ended_at FROM releases WHERE id = $1', [version])).rows[0];
  }

  /** What users see through the gateway: which slots answered users 0..users-1 (its x-marquee-slot header). */
  async servedBy(users: number): Promise<Set<string>> {
    const slots = new Set<string>();
    for (let u = 0; u < users; u++) {
      const r = await fetch(`${this.gateway.url}/recommend/${u}`);
      await r.text();
      slots.add(String(r.headers.get('x-marquee-slot')));
    }
    return slots;
  }

  async stop(): Promise<void> {
    if (this.worker?.getState() === 'RUNNING') this.worker.shutdown();
    await this.workerRun?.catch(() => undefined);
    await this.closeDeps?.();
    await this.client?.connection.close();
    await this.runtime.remove('nightly');
    await Promise.all([stop(this.gateway?.proc), stop(this.mainStub?.proc)]);
    await this.smtp?.close();
    await this.pool?.end();
    if (this.admin) {
      await this.admin.query(`DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`);
      await this.admin.end();
    }
  }
}
