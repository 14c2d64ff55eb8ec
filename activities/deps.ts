/**
 * What the activities need from the world, built once by the worker and handed to
 * createActivities. Tests build their own (a scratch database's pool, a process runtime, a
 * mailer pointed at their SMTP server) instead of steering module state through process.env.
 */
import { Client, Connection } from '@temporalio/client';
import type { Config } from '../lib/config.ts';
import { createPool, type Pool } from '../lib/db.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import { smtpMailer, type Mailer } from '../lib/mail.ts';
import { chooseRuntime, type SlotRuntime } from '../lib/runtime/index.ts';

export interface ActivityDeps {
  cfg: Config;
  /** The live database (cfg.postgres.url): releases, routing history, evaluation reads. */
  pool: Pool;
  /** Where inference slots run, decided once. */
  runtime: SlotRuntime;
  gateway: ReturnType<typeof gatewayAdmin>;
  mailer: Mailer;
  /** A client of the worker's Temporal namespace (reconcile describes release workflows); connects on first use. */
  temporal: Client;
  /** Wall-clock time for side effects (file names, durations); workflow decisions use the workflow's clock. */
  clock: () => number;
}

/** The production dependencies for cfg; anything in `overrides` replaces its default. */
export async function createActivityDeps(cfg: Config, overrides: Partial<ActivityDeps> = {}): Promise<ActivityDeps> {
  return {
    cfg,
    pool: overrides.pool ?? createPool(cfg, { max: 5, applicationName: 'marquee-worker' }),
    runtime: overrides.runtime ?? await chooseRuntime(cfg),
    gateway: overrides.gateway ?? gatewayAdmin(cfg),
    mailer: overrides.mailer ?? smtpMailer(cfg.smtp),
    temporal: overrides.temporal ?? new Client({ connection: Connection.lazy({ address: cfg.temporal.address }), namespace: cfg.temporal.namespace }),
    clock: overrides.clock ?? Date.now,
  };
}
