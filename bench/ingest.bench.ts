/**
 * End-to-end ingest throughput, Kafka → Postgres, beside baselines measured in the same run:
 *  - read-and-discard: a kafkajs consumer group that only reads and decodes (the client's ceiling);
 *  - read-and-parse: the same consumer, each batch parsed and aggregated into rows by the ingest's
 *    own code (parseFetched), after eachBatch returns as the ingest does it, and then dropped:
 *    ingest without Postgres, which tells how much of the gap to read-and-discard is the parsing
 *    and how much the writing;
 *  - kcat: librdkafka's consumer reading the same topic to /dev/null (a ceiling that does not
 *    depend on kafkajs; reported as "not installed" when kcat is not on the PATH);
 *  - per-line INSERT: the seed's approach, one INSERT per parsed line (run on a bounded sample,
 *    since at its speed a million lines would take a long time; 0 skips it).
 * The topic is produced once before any timing; then each round runs every arm once, in an order
 * that rotates from round to round, so a noisy neighbour hits all arms alike. Ratios are per round.
 * Each kafkajs arm's CPU per message (this process, every thread) is printed beside its rate: on
 * two shared cores it says whether a gap is work on the ingest's side or waiting on the others.
 * 4,000,000 lines by default: read-and-discard takes them in ~5 s; at 1,000,000 a round lasts under
 * 2 s, and the start-ups (threads, the group's join, the first writes on cold connections and cold
 * code) weigh as much as the reading, which a service that runs for days pays once. The start-up is
 * printed on its own.
 * Usage: npm run bench:ingest [-- --lines 4000000 --rounds 3 --baseline-lines 50000]
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { loadConfig } from '../lib/config.ts';
import { parseLine } from '../lib/events/parser.ts';
import { INGEST_FETCH, INGEST_NODE_FLAGS } from '../lib/ingest/runtime.ts';
import { ensureTopic, kafkaClient, produceLines } from '../lib/kafka.ts';
import { parseFetched } from '../services/ingest/consumer.ts';
import { IngestThreads } from '../services/ingest/threads.ts';
import { generateLines } from '../services/simulator/offline.ts';
import { benchArgs } from '../testkit/args.ts';
import { ingestThreadBundle } from '../testkit/ingest-bundle.ts';
import { scratchDatabase } from '../testkit/db.ts';

// The ingest service runs with INGEST_NODE_FLAGS; so does this process, where both kafkajs arms
// (marquee ingest and read-and-discard) run: re-executed with them unless they are already set.
if (!INGEST_NODE_FLAGS.every((f) => process.execArgv.includes(f))) {
  const child = spawnSync(process.execPath, [...INGEST_NODE_FLAGS, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}

const cfg = loadConfig();
const usage = 'npm run bench:ingest [-- --lines 4000000 --rounds 3 --baseline-lines 50000 --threads N]';
const args = benchArgs(usage, { lines: '4000000', rounds: '3', 'baseline-lines': '50000', threads: String(cfg.services.ingest.threads) });
const N = args.number('lines', { min: 1, integer: true });
const ROUNDS = args.number('rounds', { min: 1, integer: true });
const BASELINE_N = Math.min(N, args.number('baseline-lines', { min: 0, integer: true }));
const THREADS = args.number('threads', { min: 1, integer: true });
process.env.MARQUEE_KAFKA_QUIET = '1';

/** An arm's rate from its start, and its steady rate: from its first data in hand (a batch read, or written) to the last. */
interface Rate { total: number; steady: number; firstMs: number }
const rates = (t0: number, tFirst: number, nFirst: number, t1: number): Rate =>
  ({ total: N / ((t1 - t0) / 1000), steady: (N - nFirst) / ((t1 - tFirst) / 1000), firstMs: tFirst - t0 });

/** A kafkajs consumer with the ingest's fetch settings that only reads: `discard` drops each line, `parse` parses and aggregates each batch as the ingest does. */
async function readOnly(topic: string, mode: 'discard' | 'parse'): Promise<Rate> {
  const parse = mode === 'parse';
  // Timed from before connect, as the ingest arm is timed from before its start().
  const t0 = performance.now();
  // The ingest consumer's own fetch settings (INGEST_FETCH), so that both kafkajs arms read alike.
  const { partitionsConsumedConcurrently, ...fetch } = INGEST_FETCH;
  const consumer = kafkaClient(cfg, 'bench').consumer({ groupId: `bench-${mode}-${randomBytes(4).toString('hex')}`, ...fetch });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let chars = 0;
  let t1 = 0;
  let tFirst = 0;
  let nFirst = 0;
  await new Promise<void>((resolve) => {
    const count = (n: number) => {
      seen += n;
      if (tFirst === 0) { tFirst = performance.now(); nFirst = seen; }
      if (seen >= N && t1 === 0) { t1 = performance.now(); resolve(); }
    };
    void consumer.run({
      partitionsConsumedConcurrently,
      eachBatch: async ({ batch }) => {
        const fetched = batch.messages;
        // Timed to the last batch parsed, not fetched.
        if (parse) setImmediate(() => { chars += parseFetched(fetched).built.events; count(fetched.length); });
        else {
          for (const m of fetched) chars += m.value ? m.value.toString('utf8').length : 0;
          count(fetched.length);
        }
      },
    });
  });
  await consumer.disconnect();
  if (chars === 0) throw new Error('read nothing');
  return rates(t0, tFirst, nFirst, t1);
}

/** How long the marquee arm's threads took to load their code, before its clock started (printed, not timed). */
const loadMs: number[] = [];

async function marqueeIngest(topic: string, entry: URL): Promise<Rate> {
  const db = await scratchDatabase('bench_ingest', { cfg, max: 2 });
  // As the service runs it: THREADS consumer threads, each its own pool, one consumer group.
  let failed: Error | undefined;
  const ingest = new IngestThreads(cfg, {
    threads: THREADS, entry, topic, database: db.name, groupId: `bench-ingest-${randomBytes(4).toString('hex')}`,
    log: () => undefined, onFailure: (err) => { failed = err; },
  });
  let t0 = 0;
  let tFirst = 0;
  let nFirst = 0;
  let t1 = 0;
  try {
    // Timed from the consumers' start with their code loaded, as read-and-discard's is.
    const tl = performance.now();
    await ingest.load();
    t0 = performance.now();
    loadMs.push(t0 - tl);
    await ingest.start();
    for (;;) {
      if (failed) throw failed;
      const { rows } = await db.pool.query('SELECT coalesce(sum(next_offset), 0)::bigint AS n FROM ingest_offsets WHERE topic = $1', [topic]);
      const n = Number(rows[0].n);
      if (tFirst === 0 && n > 0) { tFirst = performance.now(); nFirst = n; }
      if (n >= N) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    t1 = performance.now();
  } finally {
    await ingest.stop();
  }
  const { rows } = await db.pool.query('SELECT (SELECT count(*) FROM watches) AS w, (SELECT count(*) FROM dead_letters) AS d, (SELECT count(*) FROM recommendation_events) AS r');
  console.log(`  marquee ingest wrote: ${rows[0].w} watch rows, ${rows[0].r} recommendation events, ${rows[0].d} dead letters`);
  await db.drop();
  return rates(t0, tFirst, nFirst, t1);
}

/** The kcat on the PATH, or null: the bench then reports the second ceiling as not installed. */
function kcatVersion(): string | null {
  const r = spawnSync('kcat', ['-V'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  const m = /Version (\S+).*?(librdkafka \S+)/.exec(r.stdout + r.stderr);
  return m ? `${m[1]}, ${m[2]}` : 'unknown version';
}

/**
 * librdkafka's consumer (kcat, no consumer group: all partitions assigned) reading every line to
 * /dev/null. `-c N` makes it exit after exactly N messages, so a clean exit means it read them all.
 */
async function kcatToDevNull(topic: string): Promise<number> {
  const devNull = openSync('/dev/null', 'w');
  const t0 = performance.now();
  try {
    const stderr = await new Promise<string>((resolve, reject) => {
      const child = spawn('kcat', ['-C', '-b', cfg.kafka.brokers.join(','), '-t', topic, '-o', 'beginning', '-c', String(N), '-q', '-f', '%s\n'],
        { stdio: ['ignore', devNull, 'pipe'] });
      let err = '';
      child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
      const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(err);
        else reject(new Error(`kcat exited with ${signal ?? code} before reading ${N} messages: ${err.trim().slice(0, 300)}`));
      });
    });
    void stderr;
  } finally {
    closeSync(devNull);
  }
  return N / ((performance.now() - t0) / 1000);
}

/** The seed's consumer: one INSERT per line, with its duplicate-key check, autocommitted. */
async function perLineInsert(topic: string): Promise<number> {
  const db = await scratchDatabase('bench_seed', { cfg, max: 8 });
  const client = await db.pool.connect();
  const consumer = kafkaClient(cfg, 'bench').consumer({ groupId: `bench-seed-${randomBytes(4).toString('hex')}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  const t0 = performance.now();
  let t1 = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message, partition }) => {
        if (seen >= BASELINE_N) return;
        const line = message.value?.toString('utf8') ?? '';
        const r = parseLine(line);
        if (!r.ok) {
          await client.query('INSERT INTO dead_letters (line, reason, topic, kafka_partition, kafka_offset) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [line, r.reason, topic, partition, message.offset]);
        } else {
          const e = r.event;
          if (e.kind === 'watch') {
            await client.query('INSERT INTO movies (id) VALUES ($1) ON CONFLICT DO NOTHING', [e.movieId]);
            await client.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute) VALUES ($1, $2, $3, $3, 1, $4)
              ON CONFLICT (user_id, movie_id) DO UPDATE SET last_at = EXCLUDED.last_at, minutes = watches.minutes + 1, max_minute = GREATEST(watches.max_minute, EXCLUDED.max_minute)`, [e.userId, e.movieId, e.atIso, e.minute]);
          } else if (e.kind === 'rate') {
            await client.query(`INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES ($1, $2, $3, $4)
              ON CONFLICT (user_id, movie_id) DO UPDATE SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at`, [e.userId, e.movieId, e.rating, e.atIso]);
          } else if (e.kind === 'account') {
            await client.query('INSERT INTO accounts (user_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING', [e.userId, e.atIso]);
          } else {
            await client.query(`INSERT INTO recommendation_events (at, user_id, server, status, movie_ids, error, latency_ms, topic, kafka_partition, kafka_offset)
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, [e.atIso, e.userId, e.server, e.status, e.movieIds, e.error, e.latencyMs, topic, partition, message.offset]);
          }
        }
        seen++;
        if (seen === BASELINE_N) { t1 = performance.now(); resolve(); }
      },
    });
  });
  await consumer.disconnect();
  client.release();
  await db.drop();
  return BASELINE_N / ((t1 - t0) / 1000);
}

/**
 * The generated lines live only in here: an async function's locals stay alive across its awaits,
 * and millions of line strings kept in this process's old generation for the whole run made every
 * full garbage collection of the kafkajs arms mark them, which costs the allocating arm (marquee)
 * more than read-and-discard; the ingest service never holds its input.
 */
async function produceTopic(topic: string): Promise<void> {
  const { lines } = generateLines({ seed: 7, count: N, malformedFraction: 0.01 });
  await ensureTopic(cfg, topic, cfg.kafka.partitions);
  await produceLines(cfg, lines, { topic });
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US').padStart(9);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };

async function main(): Promise<void> {
  const topic = `bench-ingest-${randomBytes(4).toString('hex')}`;
  const kcat = kcatVersion();
  console.log(`bench:ingest: generating ${N.toLocaleString()} lines (1% malformed) and producing them to ${topic}`);
  const t0 = performance.now();
  await produceTopic(topic);
  console.log(`  produced in ${((performance.now() - t0) / 1000).toFixed(1)} s (before any timing); kcat: ${kcat ? `kcat ${kcat}` : 'kcat not installed (apt-get install kcat)'}`);
  console.log(`  node flags of both kafkajs arms (the ingest service's): ${INGEST_NODE_FLAGS.join(' ')}; fetch settings of both: ${JSON.stringify(INGEST_FETCH)}`);
  const tb = performance.now();
  const entry = await ingestThreadBundle();
  console.log(`  marquee ingest: ${THREADS} consumer thread(s) in one group (services.ingest.threads; --threads N), started from a bundle of services/ingest/thread.ts as in the services image (built in ${Math.round(performance.now() - tb)} ms, before any timing); read-and-discard and read-and-parse: one consumer`);
  try {
    type Arm = 'marquee' | 'discard' | 'parse' | 'kcat';
    const arms: Arm[] = kcat ? ['marquee', 'discard', 'parse', 'kcat'] : ['marquee', 'discard', 'parse'];
    const results: Record<Arm, number[]> = { marquee: [], discard: [], parse: [], kcat: [] };
    const ratios: { discard: number[]; parse: number[]; kcat: number[]; steady: number[] } = { discard: [], parse: [], kcat: [], steady: [] };
    // This process's CPU (every thread: JavaScript, garbage collection, I/O) per message of an arm;
    // whatever Postgres and the broker spend is not in it.
    const cpu: Record<'marquee' | 'discard' | 'parse', number[]> = { marquee: [], discard: [], parse: [] };
    // From an arm's start to its first batch written (marquee) or read (read-and-discard).
    const start: Record<'marquee' | 'discard', number[]> = { marquee: [], discard: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = arms.map((_, i) => arms[(i + round) % arms.length]);
      const got: Partial<Record<Arm, number>> = {};
      const cpuNow: Partial<Record<Arm, number>> = {};
      const steady: { marquee?: number; discard?: number } = {};
      for (const arm of order) {
        const c0 = process.cpuUsage();
        const r: Rate = arm === 'marquee' ? await marqueeIngest(topic, entry) : arm === 'discard' ? await readOnly(topic, 'discard')
          : arm === 'parse' ? await readOnly(topic, 'parse') : { total: await kcatToDevNull(topic), steady: NaN, firstMs: NaN };
        got[arm] = r.total;
        if (arm === 'marquee' || arm === 'discard') { steady[arm] = r.steady; start[arm].push(r.firstMs); }
        results[arm].push(got[arm]);
        const c = process.cpuUsage(c0);
        if (arm !== 'kcat') { cpuNow[arm] = (c.user + c.system) / N; cpu[arm].push(cpuNow[arm]); }
      }
      ratios.discard.push(got.marquee! / got.discard!);
      ratios.steady.push(steady.marquee! / steady.discard!);
      ratios.parse.push(got.parse! / got.discard!);
      if (kcat) ratios.kcat.push(got.marquee! / got.kcat!);
      console.log(`  round ${round + 1} (${order.join(', ')}): marquee ${fmt(got.marquee!)} msg/s; kafkajs read-and-discard ${fmt(got.discard!)} (×${(got.marquee! / got.discard!).toFixed(2)}); read-and-parse ${fmt(got.parse!)} (×${(got.parse! / got.discard!).toFixed(2)} of read-and-discard)` +
        (kcat ? `; kcat to /dev/null ${fmt(got.kcat!)} (×${(got.marquee! / got.kcat!).toFixed(2)})` : '; kcat not installed') +
        `; this process's CPU per message: marquee ${cpuNow.marquee!.toFixed(2)} µs, read-and-discard ${cpuNow.discard!.toFixed(2)}, read-and-parse ${cpuNow.parse!.toFixed(2)}` +
        `; steady (from each arm's first batch in hand): marquee ${fmt(steady.marquee!)}, read-and-discard ${fmt(steady.discard!)} (×${(steady.marquee! / steady.discard!).toFixed(2)})` +
        `; first batch in hand after: marquee ${Math.round(start.marquee.at(-1)!)} ms (written), read-and-discard ${Math.round(start.discard.at(-1)!)} ms (read)`);
    }
    const seed = BASELINE_N > 0 ? await perLineInsert(topic) : undefined;
    const m = median(results.marquee);
    const rd = median(ratios.discard);
    console.log('');
    console.log(`  medians of ${ROUNDS} round(s), ${N.toLocaleString()} lines each:`);
    console.log(`  marquee ingest, end to end        ${fmt(m)} msg/s`);
    console.log(`  kafkajs read-and-discard          ${fmt(median(results.discard))} msg/s   marquee / read-and-discard = ${rd.toFixed(2)} (goal ≥ 0.8, first bar 0.7)`);
    console.log(`  steady rates, marquee / read-and-discard = ${median(ratios.steady).toFixed(2)} (each from its first batch in hand, written or read, to the last: the ingest's start-up, threads included, left out)`);
    console.log(`  start-up, to the first batch in hand: marquee ${Math.round(median(start.marquee))} ms (written), read-and-discard ${Math.round(median(start.discard))} ms (read); before that, not timed, the ingest threads loaded their code in ${Math.round(median(loadMs))} ms`);
    console.log(`  read-and-parse (no Postgres)      ${fmt(median(results.parse))} msg/s   read-and-parse / read-and-discard = ${median(ratios.parse).toFixed(2)} (ingest without Postgres)`);
    console.log(`  this process's CPU per message     marquee ${median(cpu.marquee).toFixed(2)} µs, read-and-discard ${median(cpu.discard).toFixed(2)}, read-and-parse ${median(cpu.parse).toFixed(2)} (CPU ratio read-and-discard / marquee = ${(median(cpu.discard) / median(cpu.marquee)).toFixed(2)}; Postgres and the broker not counted)`);
    if (kcat) console.log(`  kcat to /dev/null (librdkafka)    ${fmt(median(results.kcat))} msg/s   marquee / kcat = ${median(ratios.kcat).toFixed(2)}`);
    else console.log('  kcat to /dev/null                 kcat not installed');
    if (seed !== undefined) console.log(`  per-line INSERT (${BASELINE_N.toLocaleString()} lines)  ${fmt(seed)} msg/s   marquee / per-line INSERT = ${(m / seed).toFixed(1)}x`);
    console.log(`  goal ≥ 150,000 msg/s end to end: ${m >= 150_000 ? 'met' : 'NOT met'}; ratio to read-and-discard ≥ 0.8: ${rd >= 0.8 ? 'met' : rd >= 0.7 ? 'first bar (0.7) met' : 'NOT met'}`);
  } finally {
    const admin = kafkaClient(cfg, 'bench').admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  }
}

await main();
process.exit(0);
