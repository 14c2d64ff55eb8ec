/**
 * The simulator service: the streaming platform of the course, run locally. Serves the movie and
 * user info API on the simulator port and writes its users' activity to Kafka.
 *
 *   npx tsx services/simulator/main.ts [--seed 42] [--movies 5000] [--users 50000] [--rate 100]
 *     [--speed 1] [--duration 10m] [--malformed 0] [--gateway http://127.0.0.1:8082|none]
 *     [--port 8080] [--topic movielog] [--history 0] [--stall <after>+<for>] [--herd 1] [--amplify <ramp>]
 *     [--new-accounts 0.02]
 *
 * --history N writes N lines of past activity (ending a minute before now) before the live loop
 * starts, when the topic has never held a message: a platform with a past, so recommenders have
 * histories to work on. A topic with data is left alone, so a restart does not write it twice.
 * Each option can also come from the environment as SIMULATOR_<NAME> (SIMULATOR_RATE=500,
 * SIMULATOR_REPLAY_FROM=0.5); the command line wins. --rate 0 serves the API only. Without
 * --duration it runs until SIGTERM/SIGINT (or, replaying, the data set's end), then stops starting
 * activities, flushes what it wrote to Kafka and exits.
 *
 * Feedback loops on purpose (issue 15): --stall <after>+<for> holds the platform's lines back
 * from Kafka for a stretch of the run, as if ingest were down, while users keep following
 * recommendations (stall.ts); --herd 1 makes users who register during the run (invented world)
 * start the first movie of their first (default) list; --amplify <ramp> makes users trust the
 * platform's push more and more: over <ramp> of simulated time the share of visits that ask for a
 * list and start one of its movies drawn by how often the platform has shown it grows from 0 to 1,
 * so the most recommended movies take a growing share of the watches. --new-accounts sets the
 * share of new activities that are a new user's account creation (0.02): a herd run needs enough
 * of them to judge, as a short run's live traffic is mostly the sessions it tuned in to.
 *
 * The replay world (`--world movielens-100k`, SIMULATOR_WORLD=movielens-100k): the data set's users
 * and movies (fetched into .marquee/cache when missing), its time replayed on the wall clock
 * (replay-world.ts, replay-engine.ts):
 *   [--replay-from 0.5]      where the replay starts: a quantile of the rating times or an ISO date;
 *                            the ratings before it are written first as the past (empty topic only)
 *   [--speed 1440]           data-set time per real time (1440: a data-set day per minute)
 *   [--replay-window <dur>]  a recommended movie is taken when rated within this (data-set time)
 *                            after the request; default evaluation.attributionWindow × speed, so
 *                            the replay and the online metric share one window
 *   [--user-offset 0]        added to the data set's user ids
 * --seed, --movies, --users, --history and a non-zero --rate are the invented world's; given on
 * the command line with the replay world they are an error, from the environment a notice.
 */
import { loadConfig } from '../../lib/config.ts';
import { durationMs } from '../../lib/duration.ts';
import { evalSettings } from '../../lib/eval/settings.ts';
import { listen } from '../../lib/http.ts';
import { ensureTopic, produceLines } from '../../lib/kafka.ts';
import { Registry } from '../../lib/metrics.ts';
import { createApi, inventedInfo, replayInfo, type InfoSource } from './api.ts';
import { pastLines, topicIsEmpty } from './offline.ts';
import { parseOptions } from './options.ts';
import { loadReplayWorld, ReplayClock, replayPastLines, replayStart, type WorldName } from './replay-world.ts';
import { KafkaSink, type LineSink } from './sink.ts';
import { parseStall, StallingSink } from './stall.ts';
import { Traffic, type TrafficOptions } from './traffic.ts';
import { createWorld } from './world.ts';

function num(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}, got "${text}"`);
  return v;
}

async function main(): Promise<void> {
  const cfg = loadConfig();
  const o = parseOptions(process.argv.slice(2), process.env).values;
  const worldName = (o.world ?? 'invented') as WorldName;
  const seed = num('seed', o.seed, 42, 0);
  const rate = num('rate', o.rate, 100, 0);
  const speed = num('speed', o.speed, worldName === 'invented' ? 1 : 1440, 1e-6);
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
  const newAccountFraction = o['new-accounts'] === undefined ? undefined : num('new-accounts', o['new-accounts'], 0.02, 0);
  if (newAccountFraction !== undefined && newAccountFraction > 1) throw new Error(`--new-accounts is a fraction within 0..1, got ${newAccountFraction}`);
  let amplifyRampMs: number | undefined;
  if (o.amplify !== undefined) {
    try { amplifyRampMs = durationMs(o.amplify); } catch (err) { throw new Error(`--amplify is the ramp's length in simulated time, e.g. 10m: ${(err as Error).message}`); }
    if (!(amplifyRampMs > 0)) throw new Error(`--amplify must be a positive duration, got "${o.amplify}"`);
  }

  const t0 = performance.now();
  let info: InfoSource;
  /** The lines of the platform's past, made only when the topic turns out to be empty. */
  let past: () => string[];
  let driver: Pick<TrafficOptions, 'world' | 'replay'>;
  let replayClock: ReplayClock | null = null;
  if (worldName === 'invented') {
    const world = createWorld({ seed, movies: num('movies', o.movies, 5000, 1), users: num('users', o.users, 50_000, 1) });
    console.log(`simulator: world of ${world.movieCount} movies and ${world.userCount} users (seed ${seed}) in ${Math.round(performance.now() - t0)} ms`);
    info = inventedInfo(world);
    past = () => pastLines({ seed, world, count: history, endMs: Date.now() });
    driver = { world };
  } else {
    const userOffset = num('user-offset', o['user-offset'], 0, 0);
    if (!Number.isInteger(userOffset)) throw new Error(`--user-offset must be a whole number, got "${o['user-offset']}"`);
    const world = loadReplayWorld(worldName, { userOffset, log: (line) => console.log(`simulator: ${line}`) });
    const dataStart = replayStart(world.data, o['replay-from'] ?? '0.5');
    let windowMs = evalSettings(cfg).attributionWindowMs * speed;
    if (o['replay-window'] !== undefined) {
      try { windowMs = durationMs(o['replay-window']); } catch (err) { throw new Error(`--replay-window: ${(err as Error).message}`); }
    }
    // The replay start is now on the wall clock; the past ends before it.
    const clock = (replayClock = new ReplayClock(dataStart, Date.now(), speed));
    const r = world.data.ratings;
    const left = r.filter((x) => x.atMs >= dataStart).length;
    console.log(`simulator: replay world ${world.name}: ${world.movieCount} movies, ${world.userCount} users (ids + ${userOffset}), ${r.length} ratings from ${new Date(r[0].atMs).toISOString()} to ${new Date(r[r.length - 1].atMs).toISOString()}`);
    console.log(`simulator: replay from ${new Date(dataStart).toISOString()} (${r.length - left} ratings before it are the past, ${left} to replay) at ×${speed} (the rest of the data set in ${formatSpan((r[r.length - 1].atMs - dataStart) / speed)}); a recommended movie is taken when rated within ${formatSpan(windowMs)} of data-set time after the request`);
    info = replayInfo(world);
    past = () => [...replayPastLines(world, clock)];
    driver = { replay: { world, clock, windowMs } };
  }

  const registry = new Registry();
  let traffic: Traffic | undefined;
  let sink: KafkaSink | undefined;
  let stalling: StallingSink | undefined;
  const app = createApi(info, {
    registry,
    health: () => ({
      ...(replayClock && traffic ? { replayAt: new Date(replayClock.toData(Date.now())).toISOString() } : {}),
      ...(traffic ? { traffic: { ...traffic.stats, acked: sink!.produced(), backlog: sink!.backlog() } } : { traffic: 'off' }),
    }),
  });
  const server = await listen(app, port);
  const address = server.address();
  console.log(`simulator: /movie/<id>, /user/<id>, /healthz, /metrics on 127.0.0.1:${typeof address === 'object' && address ? address.port : port}`);

  // The replay's past belongs to its clock, which starts with the traffic: none without it (--rate 0).
  if (history > 0 || (replayClock && rate > 0)) {
    await ensureTopic(cfg, topic);
    if (await topicIsEmpty(cfg, topic)) {
      const t1 = performance.now();
      const lines = past();
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
    traffic = new Traffic({ ...driver, sink: out, seed, rate, speed, gateway, malformedFraction: malformed, durationMs: duration, registry, behaviour: { herdNewUsers: herd || undefined, amplifyRampMs, newAccountFraction } });
    if (stall) console.log(`simulator: holding lines back from Kafka ${stall.afterMs / 1000} s into the run for ${stall.forMs / 1000} s (--stall)`);
    if (herd) console.log('simulator: new users start the first movie of their first list (--herd)');
    if (amplifyRampMs) console.log(`simulator: users follow the platform's most shown movies more and more, all of them after ${amplifyRampMs / 1000} s of simulated time (--amplify)`);
    if (driver.world) {
      const capacity = (driver.world.userCount * 0.9 * speed) / 60;
      if (rate > capacity * 0.8) {
        console.warn(`simulator: ${rate} lines/s is near or above what ${driver.world.userCount} users watching one movie at a time can produce at speed ${speed} (~${Math.round(capacity)} lines/s); expect less, or raise --users or --speed`);
      }
    }
    traffic.start();
    console.log(driver.world
      ? `simulator: ${rate} lines/s to ${topic}, simulated time ×${speed}, gateway ${gateway ?? 'none'}${duration ? `, for ${duration / 1000} s` : ''}`
      : `simulator: replaying to ${topic}, data-set time ×${speed}, gateway ${gateway ?? 'none'}${duration ? `, for ${duration / 1000} s` : ''}`);
  }

  const progress = setInterval(() => {
    if (!traffic || !sink) return;
    const s = traffic.stats;
    console.log(
      `simulator: ${s.written} lines written, ${sink.produced()} acked by Kafka (${s.malformed} malformed); ` +
      `recommendation requests ${s.recOk} ok, ${s.recFailed} failed, ${s.recHttpError} non-2xx, ${s.recSkipped} skipped; ` +
      `sessions ${s.engine.recommendedSessions} from recommendations, ${s.engine.discoveredSessions} ${replayClock ? 'real next movies' : 'self-found'}; ${traffic.engine.active.size} users active` +
      (replayClock ? `; replay at ${new Date(replayClock.toData(Date.now())).toISOString()}` : ''),
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

/** 90061000 → "1d 1h 1m" (the coarse span of a duration, for log lines). */
function formatSpan(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, s] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= s && parts.length < 3) { parts.push(`${Math.floor(rest / s)}${unit}`); rest %= s; }
  }
  return parts.join(' ') || `${Math.round(ms)} ms`;
}

main().catch((err) => {
  console.error(`simulator: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
