/**
 * The canary release end to end on the real stack: Temporal dev server, Docker (or local processes
 * where the engine cannot run), Postgres, Kafka, ChromaDB and an SMTP server on loopback, with the
 * simulator's traffic flowing through the gateway the whole time.
 *
 * Everything runs on ports, a database, a topic and a task queue of its own, with a short bake
 * (minutes instead of 12 h) and sample sizes that such a bake can reach.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { catchMail, type MailCatcher } from '../testkit/mail.ts';

const tag = randomBytes(3).toString('hex');
const dbName = `marquee_e2e_${tag}`;
const ports = { gateway: 18082, main: 13001, nightly: 13002, simulator: 18080, ingest: 18091, smtp: 12525 };
// Set before anything loads the config: the worker, gateway, ingest, slots and this file all share it.
Object.assign(process.env, {
  MARQUEE_POSTGRES_URL: `postgresql://marquee@127.0.0.1:5432/${dbName}`,
  MARQUEE_KAFKA_TOPIC: `e2e-${tag}`,
  MARQUEE_KAFKA_GROUPID: `e2e-${tag}`,
  MARQUEE_TEMPORAL_TASKQUEUE: `e2e-${tag}`,
  MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
  MARQUEE_SERVICES_INFERENCEMAIN_PORT: String(ports.main),
  MARQUEE_SERVICES_INFERENCENIGHTLY_PORT: String(ports.nightly),
  MARQUEE_SERVICES_SIMULATOR_PORT: String(ports.simulator),
  MARQUEE_SERVICES_INGEST_PORT: String(ports.ingest),
  MARQUEE_SMTP_PORT: String(ports.smtp),
  MARQUEE_SMTP_TO: 'oncall@e2e.test',
  // A bake of minutes: outcomes are attributed within 1 minute, and the judge's minimum sample
  // is what ~4 minutes of simulator traffic gives.
  MARQUEE_EVALUATION_ATTRIBUTIONWINDOW: '1m',
  MARQUEE_EVALUATION_JUDGE_MINUSERSPERSLOT: '80',
  MARQUEE_EVALUATION_GUARDRAILS_WINDOW: '1m',
  MARQUEE_EVALUATION_GUARDRAILS_MINEXPOSURES: '20',
  MARQUEE_EVALUATION_GUARDRAILS_MAXFALLBACKRATE: '0.3',
  MARQUEE_EVALUATION_GUARDRAILS_MAXERRORRATE: '0.1',
  MARQUEE_EVALUATION_OFFLINE_MINUSERS: '20',
  // The offline gate only reports here, so that the worse release reaches the judge too: the
  // tests check its numbers (better offline, worse offline) instead of letting it abort early.
  MARQUEE_EVALUATION_OFFLINE_MINRELATIVEDIFFERENCE: '-1',
  MARQUEE_RELEASE_INCONCLUSIVEEXTENSION: '90s',
});

const { loadConfig } = await import('../lib/config.ts');
const { createPool, migrate } = await import('../lib/db.ts');
const { ensureTopic, kafkaClient, topicOffsets } = await import('../lib/kafka.ts');
const { connectClient } = await import('../lib/temporal.ts');
const { buildVectors } = await import('../lib/vectors/build.ts');
const { createWorld, movieInfo } = await import('../services/simulator/world.ts');
const { deploy } = await import('../cli/deploy.ts');
const { chooseRuntime } = await import('../lib/runtime/index.ts');
const { gatewayAdmin } = await import('../lib/gateway-client.ts');
const { engineAvailable, dockerDisabled } = await import('../lib/docker.ts');
const { temporalBinary } = await import('../stack/components/venv.ts');
const { statusQuery } = await import('../workflows/canary.ts');
const { requireStack } = await import('./support/servers.ts');
const { spawnService, waitForHttp } = await import('./support/processes.ts');
type Service = import('./support/processes.ts').Service;
type ReleaseOutcome = import('../lib/release/types.ts').ReleaseOutcome;

const exec = promisify(execFile);
const cfg = loadConfig();
const world = { seed: 11, movies: 1500, users: 12_000 };
/** Past activity the simulator writes first (hours of it), so that most users have a history to rank from. */
const historyLines = 800_000;
const mails: string[] = [];
const services: Service[] = [];
let smtp: MailCatcher | undefined;
let client: Client;
const admin = createPool(cfg, { database: 'postgres', max: 1 });
const pool = () => createPool(cfg, { max: 2 });

async function release(version: string, model: string, extra: Record<string, unknown> = {}): Promise<ReleaseOutcome> {
  const handle = await client.workflow.start('CanaryRelease', {
    taskQueue: cfg.temporal.taskQueue, workflowId: `release-${version}`,
    args: [{ version, model, percent: 50, bake: '4m', interval: '30s', notify: ['oncall@e2e.test'], ...extra }],
  });
  return (await handle.result()) as ReleaseOutcome;
}

async function nightlyLeft(): Promise<boolean> {
  const s = await (await chooseRuntime(cfg)).describe('nightly');
  return s !== undefined;
}

/** Waits until ingest has stored what the topic holds (at least `atLeast` messages). */
async function caughtUp(atLeast = 0, timeoutMs = 120_000): Promise<void> {
  const p = pool();
  const kafkaAdmin = kafkaClient(cfg, 'e2e').admin();
  await kafkaAdmin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const high = (await topicOffsets(kafkaAdmin, cfg.kafka.topic)).reduce((s, o) => s + Number(o.high), 0);
      const { rows } = await p.query('SELECT coalesce(sum(next_offset), 0)::bigint AS n FROM ingest_offsets WHERE topic = $1', [cfg.kafka.topic]);
      if (high >= atLeast && Number(rows[0].n) >= high) return;
      if (Date.now() > deadline) throw new Error(`ingest did not catch up: ${rows[0].n} of ${high} messages stored (wanted at least ${atLeast})`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await kafkaAdmin.disconnect();
    await p.end();
  }
}

/** Requests that failed or came late as the simulator saw them (its lines, read back from Kafka). */
async function failedOrLate(): Promise<{ total: number; bad: number }> {
  await caughtUp();
  const p = pool();
  try {
    const { rows } = await p.query(`SELECT count(*)::int AS total, count(*) FILTER (WHERE status <> 200 OR latency_ms > 600)::int AS bad FROM recommendation_events`);
    return rows[0];
  } finally {
    await p.end();
  }
}

describe('canary release end to end', () => {
  beforeAll(async () => {
    await requireStack(cfg, 'postgres', 'kafka', 'temporal', 'chroma');
    if (!dockerDisabled()) {
      const engine = await engineAvailable();
      if (!engine.ok) throw new Error(`the Docker engine is not available (${engine.reason}); start it with npm run stack -- up docker, or set MARQUEE_DOCKER=off to run the slots as local processes`);
    }
    smtp = await catchMail(ports.smtp, { into: mails });

    await admin.query(`CREATE DATABASE "${dbName}"`);
    const p = pool();
    await migrate(p);
    // The catalog's job (tested on its own): the world's movie metadata, then content vectors.
    const w = createWorld(world);
    for (const m of w.movies) {
      const i = movieInfo(m);
      await p.query(`INSERT INTO movies (id, title, year, genres, original_language, popularity, vote_average, vote_count, runtime, release_date, fetched_at)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10, now())`, [i.id, i.title, i.year, i.genres, i.original_language, i.popularity, i.vote_average, i.vote_count, i.runtime, i.release_date]);
    }
    await buildVectors(cfg, p, { kind: 'content', log: () => undefined });
    await p.end();
    await ensureTopic(cfg, cfg.kafka.topic, 4);

    console.log(await deploy('main', 'seed-baseline', 'models/seed-baseline.json'));
    services.push(spawnService('services/gateway/main.ts', {}));
    services.push(spawnService('services/ingest/main.ts', { MARQUEE_KAFKA_QUIET: '1' }));
    services.push(spawnService('workers/main.ts', {}));
    await waitForHttp(`http://127.0.0.1:${ports.gateway}/healthz`, 60_000, 'gateway');
    services.push(spawnService('services/simulator/main.ts', { MARQUEE_KAFKA_QUIET: '1' }, [
      '--seed', String(world.seed), '--movies', String(world.movies), '--users', String(world.users),
      '--rate', '250', '--speed', '1', '--history', String(historyLines), '--gateway', `http://127.0.0.1:${ports.gateway}`, '--port', String(ports.simulator), '--topic', cfg.kafka.topic,
    ]));
    client = await connectClient(cfg);
    // The past activity ingested, then a minute of live traffic as main's baseline.
    await caughtUp(historyLines, 300_000);
    await new Promise((r) => setTimeout(r, 60_000));
  }, 600_000);

  afterAll(async () => {
    for (const s of [...services].reverse()) await s.stop();
    const runtime = await chooseRuntime(cfg);
    await runtime.remove('nightly');
    await runtime.remove('main');
    await client?.connection.close();
    await smtp?.close();
    await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    await admin.end();
    const k = kafkaClient(cfg, 'e2e').admin();
    await k.connect();
    await k.deleteTopics({ topics: [cfg.kafka.topic] }).catch(() => undefined);
    await k.disconnect();
  }, 180_000);

  /** Whatever the decision, traffic ends on one main, nightly is gone and the e-mail has the verdict. */
  async function expectCleanEnd(version: string, outcome: ReleaseOutcome, expectedMain: string) {
    const routing = await gatewayAdmin(cfg).get('e2e');
    expect(routing.mainVersion).toBe(expectedMain);
    expect(routing.nightlyPercent).toBe(0);
    expect(routing.nightlyUrl).toBeNull();
    expect(await nightlyLeft()).toBe(false);
    const mail = mails.find((m) => m.includes(`release ${version}`));
    expect(mail).toContain(outcome.decision.toUpperCase());
    expect(mail).toContain(`Judge: ${outcome.status.judge?.verdict}`);
    expect(mail).toContain('hit rate');
  }

  /** The offline comparison the release ran first: candidate's hit@20 relative to main's. */
  function offlineRelative(outcome: ReleaseOutcome): number {
    const n = outcome.status.offline?.numbers;
    expect(n, 'the release has no offline numbers').toBeDefined();
    console.log(outcome.status.offline!.table);
    expect(Number(n!.users)).toBeGreaterThanOrEqual(20);
    return Number(n!.relative_difference);
  }

  it('releases taste-v1 over seed-baseline: better offline, the judge says Successful, it is promoted without a failed answer', async () => {
    const before = await failedOrLate();
    expect(before.total).toBeGreaterThan(50);
    const version = `better-${tag}`;
    const outcome = await release(version, 'models/taste-v1.json');
    console.log(`${version}: ${outcome.decision} — ${outcome.reason}\n${outcome.status.judge?.table ?? ''}`);
    expect(offlineRelative(outcome)).toBeGreaterThan(0);
    expect(outcome.status.judge?.verdict, outcome.reason).toBe('Successful');
    expect(outcome.decision).toBe('promoted');
    await expectCleanEnd(version, outcome, version);
    const health = await (await fetch(`http://127.0.0.1:${ports.main}/healthz`)).json() as { model: { path: string } };
    expect(health.model.path).toBe('models/taste-v1.json');
    const after = await failedOrLate();
    expect(after.total).toBeGreaterThan(before.total);
    expect(after.bad).toBe(0);
  }, 1_200_000);

  it('releases seed-baseline over taste-v1 (swapped): worse offline, the judge says Failed, it is aborted and main stays', async () => {
    const version = `worse-${tag}`;
    const mainBefore = (await gatewayAdmin(cfg).get('e2e')).mainVersion;
    const outcome = await release(version, 'models/seed-baseline.json');
    console.log(`${version}: ${outcome.decision} — ${outcome.reason}\n${outcome.status.judge?.table ?? ''}`);
    expect(offlineRelative(outcome)).toBeLessThan(0);
    expect(outcome.status.judge?.verdict, outcome.reason).toBe('Failed');
    expect(outcome.decision).toBe('aborted');
    await expectCleanEnd(version, outcome, mainBefore);
    expect((await failedOrLate()).bad).toBe(0);
  }, 1_200_000);

  it('an operator abort through the Temporal CLI stops the bake at once', async () => {
    const version = `abort-${tag}`;
    const handle = await client.workflow.start('CanaryRelease', {
      taskQueue: cfg.temporal.taskQueue, workflowId: `release-${version}`,
      args: [{ version, model: 'models/affinity-v1.json', percent: 20, bake: '12h', interval: '30s' }],
    });
    for (let i = 0; ; i++) {
      const s = await handle.query(statusQuery);
      if (s.phase === 'baking') break;
      if (i > 600) throw new Error(`never reached the bake: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const t0 = Date.now();
    await exec(temporalBinary(), ['workflow', 'signal', '--workflow-id', `release-${version}`, '--name', 'abort',
      '--input', '{"reason":"dashboards look wrong","by":"oncall"}', '--address', cfg.temporal.address, '--namespace', cfg.temporal.namespace]);
    const outcome = (await handle.result()) as ReleaseOutcome;
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(outcome.decision).toBe('aborted');
    expect(outcome.reason).toContain('aborted by oncall: dashboards look wrong');
    expect(await nightlyLeft()).toBe(false);
    expect((await gatewayAdmin(cfg).get('e2e')).nightlyPercent).toBe(0);
    expect(mails.find((m) => m.includes(`release ${version}`))).toMatch(/ABORTED/);
    expect((await failedOrLate()).bad).toBe(0);
  }, 900_000);
});
