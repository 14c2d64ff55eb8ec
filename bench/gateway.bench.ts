/**
 * What the gateway adds to latency: the same open-loop load (same users, same rate) straight to a
 * real inference process, through the gateway in front of it, and through a bare proxy (testkit/
 * bare-proxy.ts: a node:http hop that does nothing else, the floor of any gateway process), in
 * blocks whose order rotates so that all three see the same machine conditions. Prints p50/p90/p99/max
 * of each and the ratios; the goal is a p99 through the gateway at most 10% above the direct one on
 * a quiet machine. The bare proxy's ratio says how much of the gap is the extra hop itself.
 * --contention starts noisy neighbours on the same cores for the whole run, so every arm shares them
 * (busy loops, allocating busy loops, fsync-heavy writers; `--neighbours`, default 3 per core: the
 * machine oversubscribed 3×). Goals there: no answer through the gateway later than the 600 ms
 * budget, and its p99 at most ×1.5 of direct. With contention the gateway runs at `--nice` (default
 * -10, GATEWAY_NICE: an operator's choice, see the README), and so do the bare proxy and this load
 * generator, in every arm alike, so that a starved client does not blame the servers; the inference
 * slot keeps the default priority in every arm. `--rt 10` also runs the gateway and the bare proxy
 * with real-time scheduling (GATEWAY_RT_PRIORITY). `--priority` applies the same priorities without neighbours (on a machine
 * other people's work keeps busy).
 * Usage: npm run bench:gateway [-- --rps 200 --seconds 20 --block 5 --contention --neighbours 6]
 * Needs Postgres and ChromaDB (npm run stack -- up); uses a scratch database and collection.
 */
import { loadConfig } from '../lib/config.ts';
import { setProcessPriority } from '../lib/priority.ts';
import { benchArgs } from '../testkit/args.ts';
import { scratchDatabase } from '../testkit/db.ts';
import { inferenceWorld, startBareProxy, startGateway } from '../testkit/inference.ts';
import { openLoop, percentiles } from '../testkit/load.ts';
import { startNeighbours, oversubscribed, type Neighbours } from '../testkit/neighbours.ts';
import { request } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';

const args = benchArgs('npm run bench:gateway [-- --rps 200 --seconds 20 --block 5 --warmup 3 --contention --neighbours N --nice -10 --rt 0 --priority]',
  { rps: '200', seconds: '20', block: '5', warmup: '3', contention: false, neighbours: String(oversubscribed(3)), nice: '-10', rt: '0', priority: false });
const CONTENTION = args.flag('contention');
const NEIGHBOURS = args.number('neighbours', { min: 0, integer: true });
const NICE = args.number('nice', { min: -20, integer: true });
const RT = args.number('rt', { min: 0, integer: true });
// Priorities apply in contention mode, or on request (--priority) on a machine that is not quiet.
const PRIORITY = CONTENTION || args.flag('priority');
const BUDGET_MS = 600;
const RPS = args.number('rps', { min: 1 });
const SECONDS = args.number('seconds', { min: 1 });
const BLOCK = args.number('block', { min: 1 });
const WARMUP = args.number('warmup', { min: 0 });
const cfg = loadConfig();

const db = await scratchDatabase('bench_gateway', { cfg, max: 4 });
const { name, pool } = db;
const world = await inferenceWorld(cfg, { name, pool });
const main = await world.startSlot('main');
const gw = await startGateway(cfg, name, main.url, {
  ...(PRIORITY && NICE !== 0 ? { GATEWAY_NICE: String(NICE) } : {}), ...(PRIORITY && RT > 0 ? { GATEWAY_RT_PRIORITY: String(RT) } : {}),
});
let neighbours: Neighbours | undefined;
let bare: Awaited<ReturnType<typeof startBareProxy>> | undefined;

try {
  // The same priorities as the gateway: the floor must not be held to a worse scheduling than what it bounds.
  bare = await startBareProxy(main.url, {
    ...(PRIORITY && NICE !== 0 ? { BARE_PROXY_NICE: String(NICE) } : {}), ...(PRIORITY && RT > 0 ? { BARE_PROXY_RT_PRIORITY: String(RT) } : {}),
  });
  const bareUrl = bare.url;
  const users = world.users + 1000; // some cold starts, as in real traffic
  type Side = 'direct' | 'bare' | 'gateway';
  const lat: Record<Side, number[]> = { direct: [], bare: [], gateway: [] };
  const failed: Record<Side, number> = { direct: 0, bare: 0, gateway: 0 };
  const bySource: Record<string, number> = {};
  const lateBySource: Record<string, number> = {};
  const run = async (side: Side, seconds: number, offset: number, keep: boolean) => {
    const base = side === 'direct' ? main.url : side === 'bare' ? bareUrl : gw.url;
    await openLoop({
      rps: RPS, seconds, url: (i) => `${base}/recommend/${((offset + i) * 7919) % users}`,
      onReply: (r) => {
        if (!keep) return;
        if (r.status !== 200) failed[side]++;
        if (side === 'gateway') { const by = String(r.headers['x-marquee-slot'] ?? 'none'); bySource[by] = (bySource[by] ?? 0) + 1; if (r.ms > BUDGET_MS) lateBySource[by] = (lateBySource[by] ?? 0) + 1; }
        lat[side].push(r.ms);
      },
    });
  };
  console.log(`gateway bench: ${RPS} req/s, ${SECONDS} s per side in ${BLOCK} s blocks (alternating), after ${WARMUP} s warm-up each`);
  if (CONTENTION) {
    // Started before the warm-up and kept to the end: every arm meets the same neighbours.
    neighbours = startNeighbours(NEIGHBOURS);
    console.log(`contention: ${NEIGHBOURS} neighbours (${neighbours.kinds.join(', ')}) on ${oversubscribed(1)} cores`);
  }
  if (PRIORITY) {
    // After the children are started (they would inherit it): neighbours and the slot stay at nice 0.
    if (NICE !== 0) setProcessPriority(NICE);
    console.log(`priorities: gateway, bare proxy and load generator at nice ${NICE}${RT > 0 ? `, the gateway and the bare proxy real-time (SCHED_RR ${RT})` : ''}, the slot at nice 0`);
  }
  const sides: Side[] = ['direct', 'bare', 'gateway'];
  for (const side of sides) await run(side, WARMUP, 0, false);
  for (let b = 0; b * BLOCK < SECONDS; b++) {
    // Same user sequence on every side of a block; the order rotates so none always goes first.
    const order = sides.map((_, i) => sides[(i + b) % sides.length]);
    for (const side of order) await run(side, BLOCK, b * BLOCK * RPS, true);
  }
  const d = percentiles(lat.direct);
  const bp = percentiles(lat.bare);
  const g = percentiles(lat.gateway);
  const late = (v: number[]) => v.filter((ms) => ms > BUDGET_MS).length;
  const row = (label: string, p: typeof d, f: number, l: number) =>
    `${label.padEnd(16)} n=${p.n}  p50 ${p.p50.toFixed(2)} ms  p90 ${p.p90.toFixed(2)} ms  p99 ${p.p99.toFixed(2)} ms  max ${p.max.toFixed(2)} ms  failed ${f}  later than ${BUDGET_MS} ms ${l}`;
  console.log(row('direct to main', d, failed.direct, late(lat.direct)));
  console.log(row('bare proxy', bp, failed.bare, late(lat.bare)));
  console.log(row('through gateway', g, failed.gateway, late(lat.gateway)));
  const goal = CONTENTION ? 1.5 : 1.1;
  const ratioMet = g.p99 <= d.p99 * goal;
  const lateMet = !CONTENTION || late(lat.gateway) === 0;
  console.log(`gateway/direct: p50 ×${(g.p50 / d.p50).toFixed(2)} (+${(g.p50 - d.p50).toFixed(2)} ms), p99 ×${(g.p99 / d.p99).toFixed(2)} (+${(g.p99 - d.p99).toFixed(2)} ms); goal p99 ≤ ×${goal.toFixed(2)}: ${ratioMet ? 'met' : 'NOT met'}`
    + (CONTENTION ? `; goal none through the gateway later than ${BUDGET_MS} ms: ${lateMet ? 'met' : 'NOT met'}` : ''));
  console.log(`bare proxy/direct (the hop alone): p50 ×${(bp.p50 / d.p50).toFixed(2)} (+${(bp.p50 - d.p50).toFixed(2)} ms), p99 ×${(bp.p99 / d.p99).toFixed(2)} (+${(bp.p99 - d.p99).toFixed(2)} ms)`
    + `; gateway/bare proxy (the gateway's own work): p50 ×${(g.p50 / bp.p50).toFixed(2)}, p99 ×${(g.p99 / bp.p99).toFixed(2)}`);
  console.log(`gateway answers by who produced them: ${JSON.stringify(bySource)}; later than ${BUDGET_MS} ms by who: ${JSON.stringify(lateBySource)}`);
  // The gateway's own clock (arrival in its handler to the answer written): what the client saw
  // beyond that was spent before the gateway's event loop reached the request, or on the way back.
  await new Promise((r) => setTimeout(r, 500));
  const { rows: [own] } = await pool.query<{ max: number; late: string; p50: number; p99: number }>(
    `SELECT max(latency_ms) AS max, count(*) FILTER (WHERE latency_ms > ${BUDGET_MS}) AS late, percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99 FROM served_recommendations`);
  console.log(`gateway's own time (handler to answer, all requests incl. warm-up): p50 ${Number(own.p50).toFixed(2)} ms, p99 ${Number(own.p99).toFixed(2)} ms, max ${Number(own.max).toFixed(2)} ms, later than ${BUDGET_MS} ms ${own.late}`);
  const h = JSON.parse((await request(`${gw.url}/healthz`)).body);
  console.log(`history rows written by the gateway: ${h.writes.served_recommendations.written} (pending ${h.writes.served_recommendations.pending})`);
} finally {
  await neighbours?.stop();
  await stop(gw.proc);
  await stop(bare?.proc);
  await stop(main.proc);
  await world.cleanup();
  await db.drop();
}
