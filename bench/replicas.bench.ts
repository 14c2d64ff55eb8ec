/**
 * Throughput of main with 1 and 2 replicas behind the gateway, in the same run: two replicas of
 * main started by the local-process slot runtime on a scratch database, and a closed loop (each
 * client sends its next request when the last is answered) through the gateway, in alternating
 * blocks, with the routing state naming the second replica (PUT mainReplicas) or not. Counts only
 * answers main gave (the gateway's budgets are widened so that saturation shows as slower answers,
 * not as fallbacks); prints answers/s, p50/p99 of each arm and the ratio. Two more arms go straight
 * to the replicas (clients split over them): the slot tier's own capacity, for reference.
 * Usage: npm run bench:replicas [-- --concurrency 32 --seconds 15 --block 5]
 * Needs Postgres and ChromaDB (npm run stack -- up).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { processRuntime } from '../lib/runtime/process.ts';
import { REPLICA_PORT_STEP } from '../lib/runtime/slots.ts';
import { benchArgs } from '../testkit/args.ts';
import { scratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, startGateway } from '../testkit/inference.ts';
import { closedLoop, percentiles } from '../testkit/load.ts';
import { freePortSpaced, request, waitForHttp } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';

const args = benchArgs('npm run bench:replicas [-- --concurrency 32 --seconds 15 --block 5 --warmup 3]', { concurrency: '32', seconds: '15', block: '5', warmup: '3' });
const CONCURRENCY = args.number('concurrency', { min: 1, integer: true });
const SECONDS = args.number('seconds', { min: 1 });
const BLOCK = args.number('block', { min: 1 });
const WARMUP = args.number('warmup', { min: 0 });
const base = loadConfig();
process.env.MARQUEE_HOME = mkdtempSync(path.join(os.tmpdir(), 'marquee-bench-replicas-'));

const db = await scratchDatabase('bench_replicas', { cfg: base, max: 4 });
const { name, pool } = db;
const world = await inferenceWorld(base, { name, pool });
const port = await freePortSpaced(REPLICA_PORT_STEP, 2);
const cfg: Config = { ...base, runtime: 'process', postgres: { ...base.postgres, url: databaseUrl(base, name) }, services: { ...base.services, inferenceMain: { port } } };
const runtime = processRuntime(cfg);
const version = JSON.parse(readFileSync(world.specs.main, 'utf8')).version as string;
const urls = (await Promise.all([0, 1].map((replica) => runtime.deploy({ slot: 'main', version, model: world.specs.main, image: null, replica })))).map((s) => s.url);
await Promise.all(urls.map((u) => waitForHttp(`${u}/healthz`, 120_000, (r) => r.status === 200 && JSON.parse(r.body).degraded === false)));
const gw = await startGateway(base, name, urls[0], { GATEWAY_MAX_PENDING: '100000', GATEWAY_MAIN_DEADLINE_MS: '4000', GATEWAY_ANSWER_DEADLINE_MS: '5000' });
const auth = { authorization: `Bearer ${base.services.gateway.adminToken}`, 'content-type': 'application/json', 'x-marquee-actor': 'bench-replicas' };

try {
  const users = world.users + 1000;
  // Through the gateway (what users get), and straight to the replicas with the clients split over
  // them (what the slot tier alone sustains, without the gateway's own CPU on the same cores).
  const arms = ['1 replica', '2 replicas', 'direct, 1 replica', 'direct, 2 replicas'] as const;
  type Arm = typeof arms[number];
  const stats = Object.fromEntries(arms.map((a) => [a, { answers: 0, ms: 0, lat: [] as number[], other: 0 }])) as Record<Arm, { answers: number; ms: number; lat: number[]; other: number }>;
  const route = async (arm: Arm) => {
    const r = await request(`${gw.url}/admin/routing`, { method: 'PUT', headers: auth, body: JSON.stringify({ mainReplicas: arm === '1 replica' ? [] : [urls[1]] }) });
    if (r.status !== 200) throw new Error(`PUT /admin/routing: ${r.status} ${r.body}`);
  };
  const target = (arm: Arm, i: number) => arm.startsWith('direct') ? urls[arm === 'direct, 2 replicas' ? i % 2 : 0] : gw.url;
  const run = async (arm: Arm, seconds: number, offset: number, keep: boolean) => {
    if (!arm.startsWith('direct')) await route(arm);
    const { elapsedMs } = await closedLoop({
      concurrency: CONCURRENCY, seconds, url: (i) => `${target(arm, i)}/recommend/${((offset + i) * 7919) % users}`,
      onReply: (r) => {
        if (!keep) return;
        const fromMain = arm.startsWith('direct') || r.headers['x-marquee-slot'] === 'main';
        if (r.status === 200 && fromMain) { stats[arm].answers++; stats[arm].lat.push(r.ms); } else stats[arm].other++;
      },
    });
    if (keep) stats[arm].ms += elapsedMs;
  };
  console.log(`replica bench: ${CONCURRENCY} clients in a closed loop through the gateway, ${SECONDS} s per arm in ${BLOCK} s blocks (alternating), after ${WARMUP} s warm-up each; ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (const arm of arms) await run(arm, WARMUP, 0, false);
  for (let b = 0; b * BLOCK < SECONDS; b++) {
    const order: Arm[] = b % 2 === 0 ? [...arms] : [...arms].reverse();
    for (const arm of order) await run(arm, BLOCK, b * 100_000, true);
  }
  const rate = (arm: Arm) => stats[arm].answers / (stats[arm].ms / 1000);
  for (const arm of arms) {
    const p = percentiles(stats[arm].lat);
    console.log(`${(arm.startsWith('direct') ? arm : `gateway, ${arm}`).padEnd(20)} ${rate(arm).toFixed(0)} answers/s from main  p50 ${p.p50.toFixed(1)} ms  p99 ${p.p99.toFixed(1)} ms  (n=${p.n}; not from main or failed: ${stats[arm].other})`);
  }
  console.log(`2 replicas / 1 replica: through the gateway ×${(rate('2 replicas') / rate('1 replica')).toFixed(2)}, direct ×${(rate('direct, 2 replicas') / rate('direct, 1 replica')).toFixed(2)}; load average at the end ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
} finally {
  await stop(gw.proc);
  await Promise.all([runtime.remove('main', 0), runtime.remove('main', 1)]);
  await world.cleanup();
  await db.drop();
  rmSync(process.env.MARQUEE_HOME!, { recursive: true, force: true });
}
