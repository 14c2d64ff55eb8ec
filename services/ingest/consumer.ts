import type { Consumer, EachBatchPayload } from 'kafkajs';
import type { Config } from '../../lib/config.ts';
import type { Pool } from '../../lib/db.ts';
import { ensureTopic, kafkaClient } from '../../lib/kafka.ts';
import { latencyBuckets, Registry } from '../../lib/metrics.ts';
import { writeBatch } from '../../lib/ingest/writer.ts';

export interface IngestOptions {
  groupId?: string;
  topic?: string;
  /** Partitions written side by side (each on its own Postgres connection). */
  concurrency?: number;
  log?: (line: string) => void;
}

/**
 * The ingest consumer: Kafka batches → Postgres, exactly once. The source of truth for "how far"
 * is ingest_offsets in Postgres (written in the data's own transaction); the offsets committed to
 * Kafka are only a hint that makes restarts start close to the right place.
 */
export class Ingest {
  readonly registry = new Registry();
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

  constructor(private readonly cfg: Config, private readonly pool: Pool, private readonly opts: IngestOptions = {}) {
    this.topic = opts.topic ?? cfg.kafka.topic;
  }

  private log(line: string): void {
    (this.opts.log ?? ((l) => console.log(l)))(line);
  }

  async start(): Promise<void> {
    const kafka = kafkaClient(this.cfg, 'ingest');
    await ensureTopic(this.cfg, this.topic, undefined, kafka);
    await this.refreshLogStarts(kafka);
    this.consumer = kafka.consumer({
      groupId: this.opts.groupId ?? this.cfg.kafka.groupId,
      maxBytesPerPartition: 4 * 1024 * 1024,
      maxBytes: 16 * 1024 * 1024,
      maxWaitTimeInMs: 200,
      sessionTimeout: Number(process.env.INGEST_SESSION_TIMEOUT_MS ?? 30_000),
      heartbeatInterval: 3000,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 5000 },
    });
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      this.assigned = (e.payload.memberAssignment[this.topic] ?? []).slice();
    });
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    this.running = true;
    await this.consumer.run({
      autoCommit: true,
      autoCommitInterval: 1000,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.concurrency ?? 2,
      eachBatch: (payload) => this.onBatch(payload),
    });
    this.log(`ingest: consuming ${this.topic} as group ${this.opts.groupId ?? this.cfg.kafka.groupId}`);
  }

  private async refreshLogStarts(kafka = kafkaClient(this.cfg, 'ingest')): Promise<void> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      for (const p of await admin.fetchTopicOffsets(this.topic)) this.logStart.set(p.partition, Number(p.low));
    } finally {
      await admin.disconnect();
    }
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (!isRunning() || isStale() || batch.messages.length === 0) return;
    const started = process.hrtime.bigint();
    const messages = batch.messages.map((m) => ({ offset: Number(m.offset), value: m.value === null ? null : m.value.toString('utf8') }));
    const client = await this.pool.connect();
    let result;
    try {
      result = await writeBatch(client, batch.topic, batch.partition, messages, this.logStart.get(batch.partition) ?? 0);
    } catch (err) {
      this.errors.inc({ partition: batch.partition });
      // Nothing was committed: kafkajs retries the batch after backing off, so nothing is lost.
      this.log(`ingest: batch on partition ${batch.partition} at ${messages[0].offset} failed, will retry: ${(err as Error).message}`);
      client.release(true);
      throw err;
    }
    client.release();
    if (result.seekTo !== undefined) {
      this.seeks.inc({ partition: batch.partition });
      this.log(`ingest: partition ${batch.partition} resumes from offset ${result.seekTo} stored in Postgres (Kafka offered ${messages[0].offset})`);
      this.consumer!.seek({ topic: batch.topic, partition: batch.partition, offset: String(result.seekTo) });
      return;
    }
    resolveOffset(batch.lastOffset());
    await heartbeat();
    const labels = { partition: batch.partition };
    this.messages.inc(labels, result.written);
    this.skippedMessages.inc(labels, result.skipped);
    this.deadLetters.inc(labels, result.deadLetters);
    this.events.inc(undefined, result.events);
    for (const [table, n] of Object.entries(result.rows)) this.rows.inc({ table }, n);
    this.lag.set(labels, Math.max(0, Number(batch.highWatermark) - result.nextOffset));
    this.batchSeconds.observe(undefined, Number(process.hrtime.bigint() - started) / 1e9);
  }

  /** Stops after the batch in hand is written (kafkajs waits for a running eachBatch). */
  async stop(): Promise<void> {
    if (!this.consumer) return;
    this.running = false;
    await this.consumer.disconnect();
    this.consumer = undefined;
  }

  /** Pauses consumption (e.g. during a database restore); the batch in hand still finishes. */
  pause(): void {
    this.consumer?.pause([{ topic: this.topic }]);
    this.paused = true;
  }

  /**
   * Resumes from the offsets stored in Postgres, not from where Kafka left off: after a restore
   * the database holds older offsets, and every partition (even an idle one) must re-read from there.
   */
  async resume(): Promise<void> {
    if (this.consumer) {
      const { rows } = await this.pool.query<{ kafka_partition: number; next_offset: number }>(
        'SELECT kafka_partition, next_offset FROM ingest_offsets WHERE topic = $1', [this.topic]);
      const stored = new Map(rows.map((r) => [r.kafka_partition, Number(r.next_offset)]));
      for (const partition of this.assigned) {
        const offset = Math.max(stored.get(partition) ?? 0, this.logStart.get(partition) ?? 0);
        this.consumer.seek({ topic: this.topic, partition, offset: String(offset) });
      }
      this.consumer.resume([{ topic: this.topic }]);
    }
    this.paused = false;
  }

  health(): Record<string, unknown> {
    return { status: this.running ? 'ok' : 'stopped', paused: this.paused, topic: this.topic, messages: this.messages.get() };
  }
}
