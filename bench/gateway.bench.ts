/**
 * What the gateway adds to latency: the same open-loop load (same users, same rate) straight to a
 * real inference process and through the gateway in front of it, in alternating blocks so that
 * both see the same machine conditions. Prints p50/p90/p99/max of each and the ratios; the goal is
 * a p99 through the gateway at most 30% above the direct one.
 * Usage: npm run bench:gateway [-- --rps 200 --seconds 20 --block 5]
 * Needs Postgres and ChromaDB (npm run stack -- up); uses a scratch database and collection.
 */
import { loadConfig } from '../lib/config.ts';
import { createPool, migrate } from '../lib/db.ts';
import { benchArgs } from '../testkit/args.ts';
import { inferenceWorld, startGateway } from '../testkit/inference.ts';
import { openLoop, percentiles } from '../testkit/load.ts';
import { request } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';

const args = benchArgs('npm run bench:gateway [-- --rps 200 --seconds 20 --block 5 --warmup 3]', { rps: '200', seconds: '20', block: '5', warmup: '3' });
const RPS = args.number('rps', { min: 1 });
const SECONDS = args.number('seconds', { min: 1 });
const BLOCK = args.number('block', { min: 1 });
const WARMUP = args.number('warmup', { min: 0 });
const cfg = loadConfig();

const name = `marquee_bench_gateway_${process.pid}`;
const admin = createPool(cfg, { max: 1 });
await admin.query(`CREATE DATABASE "${name}"`);
const pool = createPool(cfg, { database: name, max: 4 });
pool.on('error', () => undefined);
await migrate(pool);
const world = await inferenceWorld(cfg, { name, pool });
const main = await world.startSlot('main');
const gw = await startGateway(cfg, name, main.url);

try {
  const users = world.users + 1000; // some cold starts, as in real traffic
  const lat = { direct: [] as number[], gateway: [] as number[] };
  const failed = { direct: 0, gateway: 0 };
  const run = async (side: 'direct' | 'gateway', seconds: number, offset: number, keep: boolean) => {
    const base = side === 'direct' ? main.url : gw.url;
    await openLoop({
      rps: RPS, seconds, url: (i) => `${base}/recommend/${((offset + i) * 7919) % users}`,
      onReply: (r) => {
        if (!keep) return;
        if (r.status !== 200) failed[side]++;
        lat[side].push(r.ms);
      },
    });
  };
  console.log(`gateway bench: ${RPS} req/s, ${SECONDS} s per side in ${BLOCK} s blocks (alternating), after ${WARMUP} s warm-up each`);
  await run('direct', WARMUP, 0, false);
  await run('gateway', WARMUP, 0, false);
  for (let b = 0; b * BLOCK < SECONDS; b++) {
    // Same user sequence on both sides of a block; the order alternates so neither always goes first.
    const order: ('direct' | 'gateway')[] = b % 2 === 0 ? ['direct', 'gateway'] : ['gateway', 'direct'];
    for (const side of order) await run(side, BLOCK, b * BLOCK * RPS, true);
  }
  const d = percentiles(lat.direct);
  const g = percentiles(lat.gateway);
  const row = (label: string, p: typeof d, f: number) =>
    `${label.padEnd(16)} n=${p.n}  p50 ${p.p50.toFixed(2)} ms  p90 ${p.p90.toFixed(2)} ms  p99 ${p.p99.toFixed(2)} ms  max ${p.max.toFixed(2)} ms  failed ${f}`;
  console.log(row('direct to main', d, failed.direct));
  console.log(row('through gateway', g, failed.gateway));
  console.log(`gateway/direct: p50 ×${(g.p50 / d.p50).toFixed(2)} (+${(g.p50 - d.p50).toFixed(2)} ms), p99 ×${(g.p99 / d.p99).toFixed(2)} (+${(g.p99 - d.p99).toFixed(2)} ms); goal p99 ≤ ×1.30: ${g.p99 <= d.p99 * 1.3 ? 'met' : 'NOT met'}`);
  const h = JSON.parse((await request(`${gw.url}/healthz`)).body);
  console.log(`history rows written by the gateway: ${h.writes.served_recommendations.written} (pending ${h.writes.served_recommendations.pending})`);
} finally {
  await stop(gw.proc);
  await stop(main.proc);
  await world.cleanup();
  await pool.end();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.end();
}
