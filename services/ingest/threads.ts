/**
 * The ingest service's consumers, one per worker thread, all members of the same consumer group.
 *
 * One consumer spends most of its thread in kafkajs' decoding, the rest in parsing and in building
 * SQL: profiles put one thread at ~0.7x of a consumer that only reads, however lean the rest. Kafka
 * spreads the topic's partitions over the group's members, so N threads decode N batches at once
 * on N cores; Postgres serialises the writers of a partition on its ingest_offsets row (see
 * lib/ingest/writer.ts), so a partition moving between threads on a rebalance is still written
 * exactly once. Several processes (or machines) scale the same way: each one is more members.
 *
 * The main thread keeps the HTTP side: it fans each command out to the threads, sums their
 * metrics, and reports a thread that dies (onFailure) rather than carrying on with fewer.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import client from 'prom-client';
import type { Config } from '../../lib/config.ts';
import { INGEST_THREAD_LIMITS } from '../../lib/ingest/runtime.ts';
import { Registry } from '../../lib/metrics.ts';

/** What a thread is started with (workerData). */
export interface ThreadData {
  groupId?: string;
  topic?: string;
  /** A database other than the configured one (benchmarks, tests). */
  database?: string;
  /** Each thread's Postgres pool: one write per partition at a time, and the offset reads. */
  poolMax: number;
}

export type ToThread = { id: number; cmd: 'loaded' | 'start' | 'join' | 'pause' | 'drained' | 'resume' | 'health' | 'metrics' | 'stop' };
export type FromThread =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string }
  | { log: string }
  | { ready: true };

export interface IngestThreadsOptions {
  threads: number;
  groupId?: string;
  topic?: string;
  database?: string;
  log?: (line: string) => void;
  /**
   * The threads' module, when not the one beside this file: a bundle of thread.ts, as the services
   * image runs it (bench:ingest, whose timing would otherwise include tsx compiling every thread).
   */
  entry?: URL;
  /** A thread died or could not start: the process should end (its supervisor starts it again). */
  onFailure?: (err: Error) => void;
}

interface Thread {
  worker: Worker;
  /** The worker's threadId, kept for messages (the worker's own reads -1 once it has exited). */
  id: number;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
  ready: boolean;
  exited: boolean;
  /** Reported once: a thread that throws emits 'error' and then 'exit'. */
  failed: boolean;
}

/** Every thread's entry: the bundle's sibling in the services image, thread.ts with tsx's loader otherwise. */
function spawnThread(data: ThreadData, entry?: URL): Worker {
  const here = import.meta.url;
  const opts = { workerData: data, resourceLimits: INGEST_THREAD_LIMITS };
  if (entry) return new Worker(entry, opts);
  if (here.endsWith('.mjs')) return new Worker(new URL('./ingest-thread.mjs', here), opts);
  // On Node 20 a worker does not inherit the loader `--import tsx` registered: it registers its own.
  // Found through its package.json: vitest's module runner has no import.meta.resolve, and
  // require.resolve gives the CommonJS build, which cannot register the ES module loader.
  const pkg = createRequire(here).resolve('tsx/package.json');
  const api = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api'].import.default;
  const tsx = pathToFileURL(path.join(path.dirname(pkg), api)).href;
  const source = new URL('./thread.ts', here).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(source)}); })`;
  return new Worker(boot, { ...opts, eval: true });
}

export class IngestThreads {
  /** The process metrics (this thread's registry); the threads' ingest_* series are summed into render(). */
  private readonly own = new Registry();
  private readonly threads: Thread[] = [];
  private nextId = 0;
  private stopped = false;

  constructor(private readonly cfg: Config, private readonly opts: IngestThreadsOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw new Error(`ingest threads must be a whole number ≥ 1, got ${opts.threads}`);
  }

  private log(line: string): void {
    (this.opts.log ?? ((l) => console.log(l)))(line);
  }

  private fail(err: Error): void {
    if (this.stopped) return;
    (this.opts.onFailure ?? ((e) => this.log(`ingest: ${e.message}`)))(err);
  }

  private call(t: Thread, cmd: ToThread['cmd']): Promise<unknown> {
    if (t.exited) return Promise.reject(new Error(`ingest thread ${t.id} has exited`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      t.pending.set(id, { resolve, reject });
      t.worker.postMessage({ id, cmd } satisfies ToThread);
    });
  }

  private all(cmd: ToThread['cmd']): Promise<unknown[]> {
    return Promise.all(this.threads.map((t) => this.call(t, cmd)));
  }

  /**
   * Starts the threads and waits until each has loaded its code, with no connection opened yet.
   * start() does it when not done before; bench:ingest times the consumers from here, as its
   * read-and-discard consumer's code is loaded before its clock starts.
   */
  async load(): Promise<void> {
    if (this.threads.length > 0) return;
    const data: ThreadData = { groupId: this.opts.groupId, topic: this.opts.topic, database: this.opts.database, poolMax: 4 };
    let joined = false;
    for (let i = 0; i < this.opts.threads; i++) {
      const worker = spawnThread(data, this.opts.entry);
      const t: Thread = { worker, id: worker.threadId, pending: new Map(), ready: false, exited: false, failed: false };
      this.threads.push(t);
      t.worker.on('message', (m: FromThread) => {
        if ('log' in m) this.log(m.log);
        else if ('ready' in m) {
          t.ready = true;
          // The last one connected lets all of them join.
          if (!joined && this.threads.length === this.opts.threads && this.threads.every((x) => x.ready)) {
            joined = true;
            for (const x of this.threads) void this.call(x, 'join').catch(() => undefined);
          }
        } else {
          const p = t.pending.get(m.id);
          t.pending.delete(m.id);
          if (m.ok) p?.resolve(m.value);
          else p?.reject(new Error(m.error));
        }
      });
      const failed = (err: Error) => {
        if (t.failed) return;
        t.failed = true;
        this.fail(err);
      };
      t.worker.on('error', (err) => failed(new Error(`ingest thread ${t.id} failed: ${err.message}`)));
      t.worker.on('exit', (code) => {
        t.exited = true;
        for (const p of t.pending.values()) p.reject(new Error(`ingest thread ${t.id} exited (${code})`));
        t.pending.clear();
        failed(new Error(`ingest thread ${t.id} exited with code ${code}`));
      });
    }
    try {
      await this.all('loaded');
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Starts every thread; they join the group together, once each is connected and subscribed. */
  async start(): Promise<void> {
    await this.load();
    try {
      await this.all('start');
    } catch (err) {
      // One that died before joining would hold the others at the barrier: none is left running.
      await this.stop();
      throw err;
    }
    this.log(`ingest: ${this.opts.threads} consumer thread(s) in group ${this.opts.groupId ?? this.cfg.kafka.groupId} on ${this.opts.topic ?? this.cfg.kafka.topic}`);
  }

  /** Stops every thread after the batches in hand are written (see Ingest.stop). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.threads.filter((t) => !t.exited).map((t) => this.call(t, 'stop').catch(() => undefined)));
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }

  async pause(): Promise<void> { await this.all('pause'); }
  async drained(): Promise<void> { await this.all('drained'); }
  async resume(): Promise<void> { await this.all('resume'); }

  /** Ok when every thread is; messages summed over the threads. */
  async health(): Promise<Record<string, unknown>> {
    const each = (await this.all('health')) as { status: string; paused: boolean; messages: number }[];
    return {
      status: each.length > 0 && each.every((h) => h.status === 'ok') ? 'ok' : 'stopped',
      paused: each.some((h) => h.paused),
      topic: this.opts.topic ?? this.cfg.kafka.topic,
      threads: each.length,
      messages: each.reduce((sum, h) => sum + h.messages, 0),
    };
  }

  readonly registry = {
    contentType: this.own.contentType,
    /** The process metrics, then every ingest_* series summed over the threads (each partition is one thread's). */
    render: async (): Promise<string> => {
      const parts = (await this.all('metrics')) as client.MetricObjectWithValues<client.MetricValue<string>>[][];
      return client.Registry.merge([this.own.prom, client.AggregatorRegistry.aggregate(parts)]).metrics();
    },
  };
}
