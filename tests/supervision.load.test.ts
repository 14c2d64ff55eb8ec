/**
 * `marquee start`'s supervision under load (issue 13, item 1): the services run under the same
 * Supervisor with the same specs as cli/services.ts, on ports, a database, a topic and a task
 * queue of this test's own, with 200 recommendation requests a second through the gateway.
 * kill -9 of ingest, catalog, simulator and worker in turn must cost no failed answer, each must be
 * back and healthy within 30 s (a cold tsx start of a service takes 1–5 s on a quiet machine, over 10 s on a loaded one), and afterwards Postgres holds exactly what the topic holds.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, request, waitForHttp } from '../testkit/net.ts';

const tag = randomBytes(3).toString('hex');
const ports = { gateway: await freePort(), ingest: await freePort(), catalog: await freePort(), simulator: await freePort(), worker: await freePort(), main: 0 };
const topic = `supervise-${tag}`;
const vectorVersion = 800_000 + Math.floor(Math.random() * 100_000);

const { loadConfig } = await import('../lib/config.ts');
const { databaseUrl } = await import('../lib/db.ts');
const { ensureTopic, kafkaClient, topicOffsets } = await import('../lib/kafka.ts');
const { createChromaClient } = await import('../lib/chroma.ts');
const { collectionName } = await import('../lib/vectors/store.ts');
const { serviceSpecs, superviseServices } = await import('../cli/services.ts');
const { inferenceWorld } = await import('../testkit/inference.ts');
const { openLoop, percentiles } = await import('../testkit/load.ts');
const { stop } = await import('../testkit/processes.ts');
const { scratchDatabase } = await import('./support/db.ts');
const { actualRows, deleteTopic, expectedRows, ingestedCount } = await import('./support/ingest.ts');
const { requireStack } = await import('./support/servers.ts');

type Supervisor = import('../lib/supervise.ts').Supervisor;
const cfg = loadConfig();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let worldDb: Awaited<ReturnType<typeof scratchDatabase>>;
let db: Awaited<ReturnType<typeof scratchDatabase>>;
let world: Awaited<ReturnType<typeof inferenceWorld>>;
let slot: Awaited<ReturnType<Awaited<ReturnType<typeof inferenceWorld>>['startSlot']>>;
let supervisor: Supervisor | undefined;
const logs: string[] = [];
const health = (name: 'ingest' | 'catalog' | 'simulator' | 'worker' | 'gateway') => `http://127.0.0.1:${ports[name]}/healthz`;

/** Every line the topic holds, read back from Kafka (what was produced, whoever produced it). */
async function topicLines(): Promise<string[]> {
  const kafka = kafkaClient(cfg, `supervise-read-${tag}`);
  const admin = kafka.admin();
  await admin.connect();
  const high = new Map((await topicOffsets(admin, topic)).map((o) => [o.partition, Number(o.high)]));
  await admin.disconnect();
  const total = [...high.values()].reduce((a, b) => a + b, 0);
  const lines: string[] = [];
  if (total === 0) return lines;
  const consumer = kafka.consumer({ groupId: `supervise-read-${tag}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Map<number, number>();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${lines.length} of ${total} lines of ${topic} in 60 s`)), 60_000);
    consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (Number(m.offset) >= (high.get(batch.partition) ?? 0)) continue;
          lines.push(m.value?.toString('utf8') ?? '');
          seen.set(batch.partition, Number(m.offset) + 1);
        }
        if ([...high].every(([p, h]) => h === 0 || (seen.get(p) ?? 0) >= h)) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  return lines;
}

beforeAll(async () => {
  await requireStack(cfg, 'kafka', 'temporal', 'chroma');
  // The slot ranks from a small world of its own; the services write into another database, so
  // that the rows ingest writes can be counted against the topic alone.
  worldDb = await scratchDatabase('supervise_world');
  world = await inferenceWorld(cfg, worldDb, { movies: 300, users: 3000 });
  slot = await world.startSlot('main');
  ports.main = slot.port;
  db = await scratchDatabase('supervise');
  await ensureTopic(cfg, topic, 4);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name),
    MARQUEE_KAFKA_TOPIC: topic,
    MARQUEE_KAFKA_GROUPID: `supervise-${tag}`,
    MARQUEE_KAFKA_QUIET: '1',
    MARQUEE_TEMPORAL_TASKQUEUE: `supervise-${tag}`,
    MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway),
    MARQUEE_SERVICES_INGEST_PORT: String(ports.ingest),
    MARQUEE_SERVICES_CATALOG_PORT: String(ports.catalog),
    MARQUEE_SERVICES_SIMULATOR_PORT: String(ports.simulator),
    MARQUEE_SERVICES_WORKER_PORT: String(ports.worker),
    MARQUEE_SERVICES_INFERENCEMAIN_PORT: String(slot.port),
    // A live platform without the 300,000 lines of past activity, and a small world, to start fast.
    SIMULATOR_HISTORY: '0', SIMULATOR_MOVIES: '500', SIMULATOR_USERS: '5000', SIMULATOR_RATE: '100',
    // The catalog's content vectors go to a collection of this test's own (removed afterwards).
    CATALOG_VECTOR_VERSION: String(vectorVersion),
  };
  supervisor = superviseServices(serviceSpecs([], env), {
    log: (name, line) => logs.push(`${name}| ${line}`),
    onOutput: (name, _s, line) => { logs.push(`${name}| ${line}`); if (logs.length > 5000) logs.splice(0, 2500); },
  });
  supervisor.start();
  for (const name of ['gateway', 'ingest', 'catalog', 'simulator', 'worker'] as const) {
    await waitForHttp(health(name), 120_000).catch((err) => { throw new Error(`${(err as Error).message}\n${logs.slice(-40).join('\n')}`); });
  }
}, 300_000);

afterAll(async () => {
  await supervisor?.stop('SIGTERM');
  await stop(slot?.proc);
  await world?.cleanup();
  await createChromaClient(cfg).deleteCollection({ name: collectionName('content', vectorVersion) }).catch(() => undefined);
  await deleteTopic(cfg, topic);
  await db?.drop();
  await worldDb?.drop();
}, 120_000);

describe('supervised services under load', () => {
  it('kill -9 of each non-gateway service: no failed answer, each back and healthy within 30 s, ingest neither loses nor duplicates', async () => {
    const s = supervisor!;
    const failures: string[] = [];
    const latencies: number[] = [];
    let loadOn = true;
    const users = world.users;
    const load = (async () => {
      let sent = 0;
      while (loadOn) {
        const r = await openLoop({
          rps: 200, seconds: 10, url: (i) => `http://127.0.0.1:${ports.gateway}/recommend/${(sent + i) * 7919 % users}`,
          onReply: (reply) => { latencies.push(reply.ms); if (reply.status !== 200) failures.push(`${reply.status} ${reply.error ?? reply.body.slice(0, 80)}`); },
        });
        sent += r.sent;
      }
      return sent;
    })();

    const recovery: Record<string, number> = {};
    const answeredDuring: Record<string, number> = {};
    await sleep(5000);
    for (const name of ['ingest', 'catalog', 'simulator', 'worker'] as const) {
      const before = s.status().find((c) => c.name === name)!;
      expect(before.running).toBe(true);
      const killedAt = Date.now();
      const answeredBefore = latencies.length;
      process.kill(before.pid!, 'SIGKILL');
      // Back: a new process, answering /healthz with 200.
      await waitForHttp(health(name), 30_000, (r) => r.status === 200 && s.status().find((c) => c.name === name)!.pid !== before.pid)
        .catch((err) => { throw new Error(`${name} not back within 30 s: ${(err as Error).message}\n${logs.filter((l) => l.startsWith(name)).slice(-20).join('\n')}`); });
      recovery[name] = Date.now() - killedAt;
      const after = s.status().find((c) => c.name === name)!;
      expect(after).toMatchObject({ running: true, restarts: before.restarts + 1, lastExit: { signal: 'SIGKILL' } });
      await sleep(5000);
      answeredDuring[name] = latencies.length - answeredBefore;
    }
    loadOn = false;
    const sent = await load;
    const p = percentiles(latencies);
    console.log(`supervision: ${sent} requests at 200/s, ${failures.length} failed, p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms; back and healthy after kill -9 (ms): ${JSON.stringify(recovery)}; answers during each outage: ${JSON.stringify(answeredDuring)}`);
    expect(failures).toEqual([]);
    // The load went on through every kill and restart: answers kept coming in each service's
    // outage and the 5 s after it (≥ 6 s at 200/s, so 100 is far below what a running load gives).
    for (const [name, n] of Object.entries(answeredDuring)) expect(n, `answers while ${name} was down and coming back`).toBeGreaterThan(100);
    // The gateway itself was never restarted.
    expect(s.status().find((c) => c.name === 'gateway')).toMatchObject({ running: true, restarts: 0 });

    // No more lines: the simulator held down (it flushes what it wrote), then ingest catches up.
    await s.hold('simulator');
    const lines = await topicLines();
    expect(lines.length).toBeGreaterThan(1000);
    const t0 = Date.now();
    while (await ingestedCount(db.pool, topic) < lines.length) {
      if (Date.now() - t0 > 90_000) throw new Error(`ingest stored ${await ingestedCount(db.pool, topic)} of ${lines.length} messages within 90 s`);
      await sleep(500);
    }
    console.log(`supervision: ingest caught up with ${lines.length} lines ${((Date.now() - t0) / 1000).toFixed(1)} s after the simulator stopped`);
    expect(await ingestedCount(db.pool, topic)).toBe(lines.length);
    expect(await actualRows(db.pool)).toEqual(expectedRows(lines));
    // Answers went on being served throughout; the history the gateway writes shows it.
    expect((await request(`http://127.0.0.1:${ports.gateway}/healthz`)).status).toBe(200);
  }, 240_000);
});
