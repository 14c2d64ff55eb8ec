/**
 * The simulator service: the streaming platform of the course, run locally. Serves the movie and
 * user info API on the simulator port and writes its users' activity to Kafka.
 *
 *   npx tsx services/simulator/main.ts [--seed 42] [--movies 5000] [--users 50000] [--rate 100]
 *     [--speed 1] [--duration 10m] [--malformed 0] [--gateway http://127.0.0.1:8082|none]
 *     [--port 8080] [--topic movielog] [--history 0] [--stall 2m+5m] [--herd 1]
 *
 * Feedback loops on purpose (issue 15): --stall <after>+<for> holds the platform's lines back
 * from Kafka for a stretch of the run, as if ingest were down, while users keep following
 * recommendations (services/simulator/stall.ts); --herd 1 makes users who register during the run
 * start the first movie of their first (default) list.
 *
 * --history N writes N lines of past activity (ending a minute before now) before the live loop
 * starts, when the topic has never held a message: a platform with a past, so recommenders have
 * histories to work on. A topic with data is left alone, so a restart does not write it twice.
 * Each option can also come from the environment as SIMULATOR_<NAME> (SIMULATOR_RATE=500);
 * the command line wins. --rate 0 serves the API only. Without --duration it runs until
 * SIGTERM/SIGINT, then stops starting activities, flushes what it wrote to Kafka and exits.
 */
import { durationMs, loadConfig } from '../../lib/config.ts';
import { listen } from '../../lib/http.ts';
import { ensureTopic, produceLines } from '../../lib/kafka.ts';
import { Registry } from '../../lib/metrics.ts';
import { createApi } from './api.ts';
import { pastLines, topicIsEmpty } from './offline.ts';
import { KafkaSink, type LineSink } from './sink.ts';
import { parseStall, StallingSink } from './stall.ts';
import { Traffic } from './traffic.ts';
import { createWorld } from './world.ts';

const NAMES = ['seed', 'movies', 'users', 'rate', 'speed', 'duration', 'malformed', 'gateway', 'port', 'topic', 'history', 'stall', 'herd'] as const;
type Name = (typeof NAMES)[number];

/** --name value, --name=value, or SIMULATOR_NAME; unknown flags are an error, not a silent default. */
function parseOptions(argv: string[], env: NodeJS.ProcessEnv): Partial<Record<Name, string>> {
  const out: Partial<Record<Name, string>> = {};
  for (const n of NAMES) {
    const v = env[`SIMULATOR_${n.toUpperCase()}`];
    if (v !== undefined && v !== '') out[n] = v;
  }
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !(NAMES as readonly string[]).includes(m[1])) throw new Error(`unknown option ${argv[i]} (options: ${NAMES.map((n) => `--${n}`).join(' ')})`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`option --${m[1]} needs a value`);
    out[m[1] as Name] = value;
  }
  return out;
}

function num(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}, got "${text}"`);
  return v;
}

async function main(): Promise<void> {
  const cfg = loadConfig();
  const o = parseOptions(process.argv.slice(2), process.env);
  const seed = num('seed', o.seed, 42, 0);
  const rate = num('rate', o.rate, 100, 0);
  const speed = num('speed', o.speed, 1, 1e-6);
  const malformed = num('malformed', o.malformed, 0, 0);
  if (malformed > 1) throw new Error(`--malformed is a fraction within 0..1, got ${malformed}`);
  const port = num('port', o.port, cfg.services.simulator.port, 0);
  // A bare number is seconds; otherwise 90s, 10m, 2h...
  const duration = o.duration === undefined ? undefined : /^\d+(\.\d+)?$/.test(o.duration) ? Number(o.duration) * 1000 : durationMs(o.duration);
  const gateway = o.gateway === 'none' ? null : (o.gateway ?? `http://127.0.0.1:${cfg.services.gateway.port}`);
  const topic = o.topic ?? cfg.kafka.topic;
  const history = num('history', o.history, 0, 0);
  if (!Number.isInteger(history)) throw new Error(`--history is a number of lines, got "${o.history}"`);
  const stall = o.stall === undefined ? undefined : parseStall(o.stall, durationMs);
  if (o.herd !== undefined && !['0', '1', 'true', 'false'].includes(o.herd)) throw new Error(`--herd is 1 or 0, got "${o.herd}"`);
  const herd = o.herd === '1' || o.herd === 'true';

  const t0 = performance.now();
  const world = createWorld({ seed, movies: num('movies', o.movies, 5000, 1), users: num('users', o.users, 50_000, 1) });
  console.log(`simulator: world of ${world.movieCount} movies and ${world.userCount} users (seed ${seed}) in ${Math.round(performance.now() - t0)} ms`);

  const registry = new Registry();
  let traffic: Traffic | undefined;
  let sink: KafkaSink | undefined;
  let stalling: StallingSink | undefined;
  const app = createApi(world, {
    registry,
    health: () => (traffic ? { traffic: { ...traffic.stats, acked: sink!.produced(), backlog: sink!.backlog() } } : { traffic: 'off' }),
  });
  const server = await listen(app, port);
  const address = server.address();
  console.log(`simulator: /movie/<id>, /user/<id>, /healthz, /metrics on 127.0.0.1:${typeof address === 'object' && address ? address.port : port}`);

  if (history > 0) {
    await ensureTopic(cfg, topic);
    if (await topicIsEmpty(cfg, topic)) {
      const t1 = performance.now();
      const lines = pastLines({ seed, world, count: history, endMs: Date.now() });
      await produceLines(cfg, lines, { topic });
      console.log(`simulator: wrote ${lines.length} lines of past activity to ${topic} in ${Math.round(performance.now() - t1)} ms`);
    } else {
      console.log(`simulator: ${topic} already holds data; no past activity written`);
    }
  }

  if (rate > 0) {
    await ensureTopic(cfg, topic);
    sink = new KafkaSink(cfg, {
      topic,
      onError: (err, attempt) => console.error(`simulator: Kafka send failed (attempt ${attempt}), retrying: ${err.message}`),
    });
    await sink.connect();
    stalling = stall ? new StallingSink(sink, stall) : undefined;
    const out: LineSink = stalling ?? sink;
    traffic = new Traffic({ world, sink: out, seed, rate, speed, gateway, malformedFraction: malformed, durationMs: duration, registry, behaviour: herd ? { herdNewUsers: true } : undefined });
    if (stall) console.log(`simulator: holding lines back from Kafka ${stall.afterMs / 1000} s into the run for ${stall.forMs / 1000} s (--stall)`);
    if (herd) console.log('simulator: new users start the first movie of their first list (--herd)');
    const capacity = (world.userCount * 0.9 * speed) / 60;
    if (rate > capacity * 0.8) {
      console.warn(`simulator: ${rate} lines/s is near or above what ${world.userCount} users watching one movie at a time can produce at speed ${speed} (~${Math.round(capacity)} lines/s); expect less, or raise --users or --speed`);
    }
    traffic.start();
    console.log(`simulator: ${rate} lines/s to ${topic}, simulated time ×${speed}, gateway ${gateway ?? 'none'}${duration ? `, for ${duration / 1000} s` : ''}`);
  }

  const progress = setInterval(() => {
    if (!traffic || !sink) return;
    const s = traffic.stats;
    console.log(
      `simulator: ${s.written} lines written, ${sink.produced()} acked by Kafka (${s.malformed} malformed); ` +
      `recommendation requests ${s.recOk} ok, ${s.recFailed} failed, ${s.recHttpError} non-2xx, ${s.recSkipped} skipped; ` +
      `sessions ${s.engine.recommendedSessions} from recommendations, ${s.engine.discoveredSessions} self-found; ${traffic.engine.active.size} users active`,
    );
  }, 10_000);

  let stopping = false;
  const shutdown = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(progress);
    console.log(`simulator: ${why}, stopping`);
    let code = 0;
    if (traffic && sink) {
      await traffic.stop();
      stalling?.release();
      await sink.close();
      const s = traffic.stats;
      console.log(`simulator: ${sink.produced()} lines produced (${s.written} written, ${s.malformed} malformed), ${s.recOk + s.recFailed + s.recHttpError} recommendation requests`);
      if (sink.unsent > 0) {
        console.error(`simulator: Kafka did not take the last ${sink.unsent} lines before the deadline`);
        code = 1;
      }
    }
    server.close();
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  if (traffic) void traffic.done.then(() => shutdown('run finished'));
}

main().catch((err) => {
  console.error(`simulator: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
