import { isMainThread } from 'node:worker_threads';
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { Config } from '../../lib/config.ts';
import type { Pool } from '../../lib/db.ts';
import { ensureTopicOffsets, kafkaClient } from '../../lib/kafka.ts';
import { latencyBuckets, Registry } from '../../lib/metrics.ts';
import { buildBatch } from '../../lib/ingest/batch.ts';
import { KnownIds } from '../../lib/ingest/known.ts';
import { INGEST_FETCH } from '../../lib/ingest/runtime.ts';
import { writeBatch, type ParsedBatch } from '../../lib/ingest/writer.ts';

export interface IngestOptions {
  groupId?: string;
  topic?: string;
  /** Partitions written side by side (each on its own Postgres connection). */
  concurrency?: number;
  log?: (line: string) => void;
  /**
   * Awaited just before the consumer joins its group. The threads of one process (threads.ts) join
   * together: a member joining alone takes every partition, and gives half back only at its next
   * heartbeat, seconds later.
   */
  beforeJoin?: () => Promise<void>;
  /**
   * The consumer stopped for good after start() had resolved (kafkajs gave up on it and will not
   * restart it, e.g. after a Kafka outage longer than its retries): the ingest no longer reads.
   * Threads exit on it (thread.ts), so that the process ends and its supervisor starts it again,
   * rather than stand by with a health of "stopped"; Postgres' offsets make that lossless.
   */
  onFatal?: (err: Error) => void;
}

/**
 * The ingest consumer: Kafka batches → Postgres, exactly once. The source of truth for "how far"
 * is ingest_offsets in Postgres (written in the data's own transaction); the offsets committed to
 * Kafka are only a hint that makes restarts start close to the right place.
 *
 * Pipelined: kafkajs fetches the next batch only once every eachBatch of the last fetch returned,
 * so eachBatch parses its batch, queues its write behind the same partition's previous one and
 * returns once at most WRITES_QUEUED writes of the partition are ahead of it. Kafka fetches and
 * decodes batch N+2 while Postgres writes batch N; a partition's writes run one at a time, in
 * offset order. kafkajs' fetch position thus runs up to two batches ahead of Postgres: a write
 * that fails seeks the partition back to the batch it failed on, and every batch fetched before a
 * seek (an older generation of the partition) is dropped unwritten. The offsets committed to
 * Kafka follow Postgres (committed after each write), never lead it.
 */
/**
 * A fetched batch's lines parsed into rows, watch lines straight from their bytes; the lines die
 * here, young, and the write keeps the rows and offsets only (see ParsedBatch). Never throws: a line the parser rejects is a dead letter.
 */
export function parseFetched(fetched: readonly KafkaMessage[]): ParsedBatch {
  const offsets: number[] = new Array(fetched.length);
  for (let i = 0; i < fetched.length; i++) offsets[i] = Number(fetched[i].offset);
  return { offsets, built: buildBatch(fetched, offsets) };
}

/**
 * kafkajs sends the next fetch request only when every eachBatch of this fetch has returned, and
 * nothing of it runs while an eachBatch does: parsed in a task of its own, after eachBatch
 * returns, the lines are parsed while the broker answers that request instead of before it.
 */
function parseSoon(fetched: readonly KafkaMessage[]): Promise<ParsedBatch> {
  return new Promise((resolve) => setImmediate(() => resolve(parseFetched(fetched))));
}

/**
 * Writes of one partition queued behind the one running before eachBatch holds kafkajs back. One
 * had kafkajs wait for the previous batch's write before fetching the next: the process idled
 * while Postgres wrote. The queued batches hold their rows and offsets only (see ParsedBatch).
 */
const WRITES_QUEUED = 2;

export class Ingest {
  /** In an ingest thread the process metrics belong to the main thread's registry (threads.ts). */
  readonly registry = new Registry({ processMetrics: isMainThread });
  readonly messages = this.registry.counter('ingest_messages_total', 'Kafka messages written to Postgres', ['partition']);
  readonly skippedMessages = this.registry.counter('ingest_skipped_messages_total', 'Kafka messages skipped because Postgres already had them', ['partition']);
  readonly events = this.registry.counter('ingest_events_total', 'Parsed events by kind');
  readonly rows = this.registry.counter('ingest_rows_total', 'Rows upserted per table', ['table']);
  readonly deadLetters = this.registry.counter('ingest_dead_letters_total', 'Lines that could not be parsed', ['partition']);
  readonly batchSeconds = this.registry.histogram('ingest_batch_seconds', 'Time to write one batch', latencyBuckets);
  readonly lag = this.registry.gauge('ingest_consumer_lag', 'Messages behind the high watermark per partition', ['partition']);
  readonly seeks = this.registry.counter('ingest_seeks_total', 'Seeks back to the offset stored in Postgres', ['partition']);
  readonly errors = this.registry.counter('ingest_batch_errors_total', 'Batches that failed and will be retried', ['partition']);

  private consumer: Consumer | undefined;
  private readonly topic: string;
  private readonly logStart = new Map<number, number>();
  private running = false;
  private assigned: number[] = [];
  private paused = false;
  /** Per partition, the writes queued or running, oldest first; each resolves to false when it failed, had to seek or was dropped. */
  private readonly queued = new Map<number, Promise<boolean>[]>();
  /** Per partition, how many seeks were made: a batch fetched before the latest one is dropped. */
  private readonly generations = new Map<number, number>();
  private readonly known = new KnownIds();
  private failures = 0;
  private stopping = false;
  /** Set when kafkajs crashed the consumer and will not restart it (see onFatal). */
  private fatal: Error | undefined;
  private started = false;
  /** Compares every assigned partition with Postgres again, soon (see catchUpSoon). */
  private catchUp: (() => void) | undefined;
  private catchUpTimer: NodeJS.Timeout | undefined;
  private readonly onPoolError = (): void => this.catchUpSoon('a Postgres connection was lost');

  constructor(private readonly cfg: Config, private readonly pool: Pool, private readonly opts: IngestOptions = {}) {
    this.topic = opts.topic ?? cfg.kafka.topic;
  }

  private log(line: string): void {
    (this.opts.log ?? ((l) => console.log(l)))(line);
  }

  async start(): Promise<void> {
    // The first batches' writes would otherwise each open a connection (~0.1 s here) after the
    // batch is in hand; opened now, they are ready while the group is still being joined.
    void this.warmPool(this.opts.concurrency ?? INGEST_FETCH.partitionsConsumedConcurrently);
    const kafka = kafkaClient(this.cfg, 'ingest');
    const groupId = this.opts.groupId ?? this.cfg.kafka.groupId;
    const consumer = kafka.consumer({
      groupId,
      maxBytesPerPartition: INGEST_FETCH.maxBytesPerPartition,
      maxBytes: INGEST_FETCH.maxBytes,
      maxWaitTimeInMs: INGEST_FETCH.maxWaitTimeInMs,
      sessionTimeout: Number(process.env.INGEST_SESSION_TIMEOUT_MS ?? 30_000),
      heartbeatInterval: 3000,
      // The threads of one process join together, but the broker closes a new group's first join
      // at once, so one of them nearly always finds it rebalancing at its SyncGroup and joins again
      // after the first retry's wait: kafkajs' default 300 ms was most of the ingest's start-up gap
      // (measured with bench:ingest, see docs/PERFORMANCE.md). Retries of one request still back
      // off to 5 s; a restart after a crash waits initialRetryTime (or the last wait of the retries
      // it gave up on) with no backoff across restarts, so it is held to one a second here, lest a
      // crash that keeps recurring fill the log fifty times a second (and none once stop() has
      // begun: kafkajs would schedule it after its own disconnect).
      retry: {
        retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 20, maxRetryTime: 5000,
        restartOnFailure: async () => {
          await new Promise((r) => setTimeout(r, 1000));
          return this.running && !this.stopping;
        },
      },
    });
    // Connecting needs no topic: it runs while the topic is checked (subscribing does need it).
    // Both are waited for, even when one fails: a connect still retrying would end connected after
    // the disconnect below.
    const [checked, connected] = await Promise.allSettled([
      ensureTopicOffsets(this.cfg, this.topic, undefined, kafka, (line) => this.log(`ingest: ${line}`)),
      consumer.connect(),
    ]);
    if (checked.status === 'rejected' || connected.status === 'rejected') {
      await consumer.disconnect().catch(() => undefined);
      throw checked.status === 'rejected' ? checked.reason : (connected as PromiseRejectedResult).reason;
    }
    for (const p of checked.value.offsets) this.logStart.set(p.partition, Number(p.low));
    this.consumer = consumer;
    this.catchUp = () => void this.catchUpWithPostgres(kafka, groupId, this.assigned).catch((err: Error) => {
      this.log(`ingest: could not compare Kafka's offsets with Postgres': ${err.message}`);
      this.catchUpSoon('the last comparison failed');
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      const before = this.assigned;
      this.assigned = (e.payload.memberAssignment[this.topic] ?? []).slice();
      for (const partition of before) {
        if (this.assigned.includes(partition)) continue;
        // Taken away: the writes queued for it and not started are dropped (its new owner reads
        // from the offsets committed so far), and another member reports its lag now; metrics
        // summed over members (threads.ts, Prometheus) would count a stale value twice.
        this.generations.set(partition, (this.generations.get(partition) ?? 0) + 1);
        this.lag.set({ partition }, 0);
      }
      this.catchUp?.();
    });
    // A Postgres restart drops the pool's idle connections; commits it acknowledged may be lost.
    this.pool.on('error', this.onPoolError);
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    this.running = true;
    this.stopping = false;
    await this.opts.beforeJoin?.();
    // kafkajs reports an error it will not retry only as this event (a broker refusing the group's
    // settings; no group coordinator found while Kafka is down for longer than the retries last):
    // its run() resolves all the same, and the ingest would stand by reading nothing.
    // Recorded even during a stop(): a stop that meets a join still in flight must not let start()
    // go on as if the consumer were reading. Told (and fatal for the thread) only when nobody stops it.
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) return;
      const err = new Error(`the Kafka consumer stopped and will not restart: ${payload.error.message}`);
      this.fatal = err;
      this.running = false;
      if (this.stopping) return;
      this.log(`ingest: ${err.message}`);
      if (this.started) this.opts.onFatal?.(err);
    });
    await this.consumer.run({
      // Offsets go to Kafka only after their batch is in Postgres (commitToKafka), never ahead of it:
      // a partition whose Kafka offset were past Postgres' but had nothing left to read would
      // never get a batch that shows the gap.
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.concurrency ?? INGEST_FETCH.partitionsConsumedConcurrently,
      eachBatch: (payload) => this.onBatch(payload),
    });
    // A join the broker refused has crashed the consumer by the time run() resolves.
    if (this.fatal) throw this.fatal;
    this.started = true;
    // A stop() during the join has ended the consumer already: nothing is consuming.
    if (!this.stopping) this.log(`ingest: consuming ${this.topic} as group ${groupId}`);
  }

  /**
   * Opens up to n pool connections at once and leaves them idle. Each is released as soon as it is
   * open, so a pool smaller than n hands the same one round instead of waiting on itself; a failure
   * here is met again, and reported, by the first write.
   */
  private async warmPool(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.pool.connect().then((c) => c.release(), () => undefined)));
  }

  /**
   * Kafka's committed offset can be AHEAD of Postgres' after a Postgres crash: the batch writer
   * commits with synchronous_commit off (lib/ingest/writer.ts), so the last commits Postgres
   * acknowledged, and whose offsets then went to Kafka, can be lost, data and offsets together.
   * A partition with more to read shows that gap in its first batch (writeBatch answers seekTo),
   * but one whose Kafka offset is at the end of the log would get no batch until new lines come.
   * So on every assignment, each partition whose Kafka offset leads Postgres' is sent back to
   * Postgres' offset now. (Kafka's offset behind Postgres' needs nothing: those lines are skipped.)
   */
  private async catchUpWithPostgres(kafka: ReturnType<typeof kafkaClient>, groupId: string, partitions: number[]): Promise<void> {
    if (partitions.length === 0) return;
    const admin = kafka.admin();
    await admin.connect();
    let committed;
    try {
      [{ partitions: committed }] = await admin.fetchOffsets({ groupId, topics: [this.topic] });
    } finally {
      await admin.disconnect();
    }
    const stored = await this.storedOffsets();
    for (const { partition, offset } of committed) {
      if (!partitions.includes(partition)) continue;
      const truth = stored(partition);
      if (Number(offset) > truth) {
        // Postgres lost commits: the movie and user markers they carried may be gone too.
        this.known.forget();
        this.seeks.inc({ partition });
        this.log(`ingest: partition ${partition} resumes from offset ${truth} stored in Postgres (Kafka's committed offset was ${offset})`);
        this.seek(this.topic, partition, truth);
      }
    }
  }

  /**
   * Where each partition goes on from, by Postgres: its stored next offset, or the start of the log
   * when retention has removed lines below that (or nothing is stored yet).
   */
  private async storedOffsets(): Promise<(partition: number) => number> {
    const { rows } = await this.pool.query<{ kafka_partition: number; next_offset: string }>(
      'SELECT kafka_partition, next_offset FROM ingest_offsets WHERE topic = $1', [this.topic]);
    const stored = new Map(rows.map((r) => [r.kafka_partition, Number(r.next_offset)]));
    return (partition) => Math.max(stored.get(partition) ?? 0, this.logStart.get(partition) ?? 0);
  }

  /**
   * A partition that is idle while Postgres loses its last commits would show the gap only when
   * its next line comes: after a lost connection or a failed write, every assigned partition is
   * compared again once Postgres has had a few seconds to come back.
   */
  private catchUpSoon(why: string): void {
    // While paused (a restore), resume() seeks every partition to Postgres' offsets anyway.
    if (!this.running || this.stopping || this.paused || this.catchUpTimer) return;
    this.log(`ingest: ${why}; comparing Kafka's offsets with Postgres' in 2 s`);
    this.catchUpTimer = setTimeout(() => {
      this.catchUpTimer = undefined;
      if (this.running && !this.stopping && !this.paused) this.catchUp?.();
    }, 2000);
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    if (this.paused || this.stopping) return;
    const queue = this.enqueue(batch.topic, batch.partition, parseSoon(batch.messages), Number(batch.highWatermark));
    resolveOffset(batch.lastOffset());
    // Lets kafkajs fetch the next batch while this one waits its turn, but no further ahead.
    if (queue.length > WRITES_QUEUED) await queue[queue.length - 1 - WRITES_QUEUED];
    await heartbeat();
  }

  /**
   * Queues a parsed batch's write behind the partition's previous one; returns the partition's
   * queue. Apart from onBatch, and with none of kafkajs' payload functions (they close over its
   * batch), so that what is kept until the write runs is the rows, not the fetched messages: V8
   * gives all closures of a scope one context.
   */
  private enqueue(topic: string, partition: number, parsed: Promise<ParsedBatch>, highWatermark: number): Promise<boolean>[] {
    const generation = this.generations.get(partition) ?? 0;
    let queue = this.queued.get(partition);
    if (!queue) this.queued.set(partition, (queue = []));
    const q = queue;
    const previous = q.at(-1);
    const start = (): Promise<boolean> =>
      // A failed or seeking write has moved the partition, or the partition was taken away: this
      // batch was fetched before that. When
      // paused, no write may start after drained() said there was none (resume() seeks anyway).
      // A stop lets the batches in hand be written (stop() waits for them), but takes no new ones.
      (this.generations.get(partition) ?? 0) !== generation || !this.running || this.paused
        ? Promise.resolve(false)
        : parsed.then((p) => this.write(topic, partition, p, highWatermark));
    const write = previous ? previous.then(start) : start();
    q.push(write);
    void write.finally(() => void q.splice(q.indexOf(write), 1));
    return q;
  }

  /** One batch's transaction; never rejects (a failure is logged, counted and seeks back). */
  private async write(topic: string, partition: number, batch: ParsedBatch, highWatermark: number): Promise<boolean> {
    const started = process.hrtime.bigint();
    const labels = { partition };
    let result;
    try {
      const client = await this.pool.connect();
      try {
        result = await writeBatch(client, topic, partition, batch, this.logStart.get(partition) ?? 0, { known: this.known });
      } catch (err) {
        client.release(true);
        throw err;
      }
      client.release();
    } catch (err) {
      this.errors.inc(labels);
      this.known.forget();
      this.catchUpSoon(`a write on partition ${partition} failed`);
      this.failures++;
      // Nothing was committed. Back off like kafkajs' retries did, then read the batch again.
      const backoff = Math.min(5000, 300 * 2 ** Math.min(this.failures - 1, 5));
      this.log(`ingest: batch on partition ${partition} at ${batch.offsets[0]} failed, will retry in ${backoff} ms: ${(err as Error).message}`);
      if (this.running && !this.stopping) await new Promise((r) => setTimeout(r, backoff));
      this.seeks.inc(labels);
      this.seek(topic, partition, batch.offsets[0]);
      return false;
    }
    this.failures = 0;
    this.commitToKafka(topic, partition, result.nextOffset);
    if (result.seekTo !== undefined) {
      // Postgres is behind what this process wrote or was told (lost commits after a crash, or
      // another owner): the movie and user markers remembered may be gone with those commits.
      this.known.forget();
      this.seeks.inc(labels);
      this.log(`ingest: partition ${partition} resumes from offset ${result.seekTo} stored in Postgres (Kafka offered ${batch.offsets[0]})`);
      this.seek(topic, partition, result.seekTo);
      return false;
    }
    this.messages.inc(labels, result.written);
    this.skippedMessages.inc(labels, result.skipped);
    this.deadLetters.inc(labels, result.deadLetters);
    this.events.inc(undefined, result.events);
    for (const [table, n] of Object.entries(result.rows)) this.rows.inc({ table }, n);
    if (this.assigned.includes(partition)) this.lag.set(labels, Math.max(0, highWatermark - result.nextOffset));
    this.batchSeconds.observe(undefined, Number(process.hrtime.bigint() - started) / 1e9);
    return true;
  }

  /** Only a hint for the next start (Postgres has the truth), so a failed commit is not retried. */
  private commitToKafka(topic: string, partition: number, offset: number): void {
    if (!this.running || !this.consumer) return;
    this.consumer.commitOffsets([{ topic, partition, offset: String(offset) }]).catch(() => undefined);
  }

  private seek(topic: string, partition: number, offset: number): void {
    this.generations.set(partition, (this.generations.get(partition) ?? 0) + 1);
    // Once stopping, kafkajs has no group to seek in: Postgres keeps the offset and the next start
    // reads from there (its first batch past that offset seeks back).
    if (!this.running || !this.consumer) return;
    try {
      this.consumer.seek({ topic, partition, offset: String(offset) });
    } catch (err) {
      // Between a crash and kafkajs' restart of the consumer there is no group to seek in. The
      // restarted consumer reads from the offsets committed to Kafka, which follow Postgres' (or
      // lead them only after lost commits, which the comparison on joining finds): nothing is skipped.
      this.log(`ingest: partition ${partition} not sent back to offset ${offset} (${(err as Error).message}); it goes on from its committed offset once the consumer has joined again`);
    }
  }

  /** Resolves when no write is in flight (the batches in hand are in Postgres or failed). */
  async drained(): Promise<void> {
    for (;;) {
      const pending = [...this.queued.values()].flat();
      if (pending.length === 0) return;
      await Promise.all(pending);
    }
  }

  /**
   * Stops after the batches in hand are written: kafkajs waits for a running eachBatch, then the
   * writes they started finish before the consumer leaves the group.
   */
  async stop(): Promise<void> {
    if (!this.consumer) return;
    // No new write starts from here; those in flight finish while the group still has the
    // partitions, so their offsets reach Kafka too.
    this.stopping = true;
    clearTimeout(this.catchUpTimer);
    this.catchUpTimer = undefined;
    this.pool.off('error', this.onPoolError);
    await this.drained();
    this.running = false;
    await this.consumer.disconnect();
    await this.drained();
    this.consumer = undefined;
  }

  /** Pauses consumption (e.g. during a database restore); the batches in hand still finish (see drained()). */
  pause(): void {
    this.consumer?.pause([{ topic: this.topic }]);
    this.paused = true;
  }

  /**
   * Resumes from the offsets stored in Postgres, not from where Kafka left off: after a restore
   * the database holds older offsets, and every partition (even an idle one) must re-read from there.
   */
  async resume(): Promise<void> {
    await this.drained();
    // The database may have been swapped: what it holds is no longer known.
    this.known.forget();
    if (this.consumer) {
      const stored = await this.storedOffsets();
      for (const partition of this.assigned) this.seek(this.topic, partition, stored(partition));
      this.consumer.resume([{ topic: this.topic }]);
    }
    this.paused = false;
  }

  health(): Record<string, unknown> {
    return { status: this.running ? 'ok' : 'stopped', paused: this.paused, topic: this.topic, messages: this.messages.total() };
  }
}
