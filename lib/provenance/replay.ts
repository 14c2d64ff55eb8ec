/**
 * Replays a Kafka topic into a scratch database from given offsets up to a point in time, with
 * the ingest service's own batch writer, so the scratch data is what ingest would have written.
 *
 * "Up to a time" is by each line's own event time (parsed as ingest parses it): a message is
 * written when its time is at or before `until`. Producers are not perfectly ordered, so reading
 * a partition goes on past the first later line and stops at the first one later than
 * `until + grace` (or at the end of the log as it was when the replay began). Lines without a
 * readable time become dead letters as in ingest; they are kept while the partition is read.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { parseLine } from '../events/parser.ts';
import { kafkaClient, topicOffsets } from '../kafka.ts';
import type { RawMessage } from '../ingest/batch.ts';
import { parseBatch, writeBatch } from '../ingest/writer.ts';
import { ProvenanceError } from './trace.ts';

export interface ReplayOptions {
  topic: string;
  /** Next offset to read per partition (the backup's ingest_offsets); partitions not named start at the log's beginning. */
  from: ReadonlyMap<number, number>;
  until: Date;
  /** How far past `until` a partition is still read for late lines (default 60 s). */
  graceMs?: number;
  /** Gives up after this long (default 10 minutes). */
  timeoutMs?: number;
  progress?: (line: string) => void;
}

export interface PartitionReplay {
  partition: number;
  /** Where the replay started: the backup's offset, or the log start when the log no longer reaches back that far. */
  from: number;
  /** Messages the log lost to retention between the backup's offset and the log start (they cannot be replayed). */
  lost: number;
  /** One past the last offset read. */
  readTo: number;
  /** The partition's end when the replay began. */
  highWatermark: number;
  /** Messages written (time at or before `until`, or no readable time). */
  written: number;
  /** Messages read but later than `until`. */
  later: number;
  stoppedBy: 'end of log' | 'later line' | 'nothing to read';
}

export interface ReplayResult {
  topic: string;
  until: string;
  graceMs: number;
  partitions: PartitionReplay[];
  written: number;
  ms: number;
}

const timeOf = (value: string | null): number | null => {
  if (value === null) return null;
  const r = parseLine(value);
  return r.ok ? r.event.atMs : null;
};

export async function replayUntil(cfg: Config, db: Pool, opts: ReplayOptions): Promise<ReplayResult> {
  const started = Date.now();
  const untilMs = opts.until.getTime();
  const graceMs = opts.graceMs ?? 60_000;
  const log = opts.progress ?? (() => undefined);
  const kafka = kafkaClient(cfg, 'reproduce');
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `marquee-reproduce-${randomBytes(6).toString('hex')}`;
  try {
    const topics = await admin.listTopics();
    if (!topics.includes(opts.topic)) throw new ProvenanceError(`Kafka has no topic ${opts.topic} (pass --topic to name the one ingest read)`);
    const offsets = await topicOffsets(admin, opts.topic);
    const parts = new Map<number, PartitionReplay & { next: number; done: boolean }>();
    for (const o of offsets) {
      const low = Number(o.low);
      const high = Number(o.high);
      const want = opts.from.get(o.partition) ?? 0;
      if (want > high) {
        throw new ProvenanceError(`the backup read partition ${o.partition} of ${opts.topic} up to offset ${want}, but the log ends at ${high}: the topic was recreated since, or is not the one ingest read (see --topic)`);
      }
      const from = Math.max(want, low);
      const done = from >= high;
      parts.set(o.partition, {
        partition: o.partition, from, lost: Math.max(0, low - want), readTo: from, highWatermark: high, written: 0, later: 0,
        stoppedBy: done ? 'nothing to read' : 'end of log', next: from, done,
      });
    }
    for (const p of opts.from.keys()) if (!parts.has(p)) throw new ProvenanceError(`the backup names partition ${p} of ${opts.topic}, which Kafka does not have`);
    const result = (): ReplayResult => {
      const list = [...parts.values()].sort((a, b) => a.partition - b.partition).map(({ next: _n, done: _d, ...p }) => p);
      return { topic: opts.topic, until: opts.until.toISOString(), graceMs, partitions: list, written: list.reduce((n, p) => n + p.written, 0), ms: Date.now() - started };
    };
    if ([...parts.values()].every((p) => p.done)) return result();

    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, maxBytesPerPartition: 4 * 1024 * 1024, retry: { retries: 3 } });
    let finish!: (err?: Error) => void;
    const finished = new Promise<void>((resolve, reject) => { finish = (err) => (err ? reject(err) : resolve()); });
    const pauseDone = () => {
      const done = [...parts.values()].filter((p) => p.done).map((p) => p.partition);
      if (done.length) consumer.pause([{ topic: opts.topic, partitions: done }]);
      if (done.length === parts.size) finish();
    };
    let failed = false;
    let lastLog = Date.now();
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          const p = parts.get(batch.partition);
          if (!p || p.done || failed) return;
          const take: RawMessage[] = [];
          for (const m of batch.messages) {
            const offset = Number(m.offset);
            // Messages before the start (a fetch that raced the seek) or already handled.
            if (offset < p.next) continue;
            const value = m.value === null ? null : m.value.toString('utf8');
            const at = timeOf(value);
            if (at !== null && at > untilMs + graceMs) {
              p.done = true;
              p.stoppedBy = 'later line';
              break;
            }
            p.next = offset + 1;
            p.readTo = p.next;
            if (at !== null && at > untilMs) p.later++;
            else take.push({ offset, value });
          }
          if (take.length) {
            const client = await db.connect();
            try {
              // Lines later than `until` leave gaps on purpose; telling the writer the log starts
              // at this batch's first offset makes it accept the gap instead of asking to seek back.
              const start = take[0].offset;
              let r = await writeBatch(client, opts.topic, p.partition, parseBatch(take), start);
              // The writer writes no batch in part: where the database already holds this batch's
              // start (its offsets ahead of `from`), the rest is written on its own.
              const stored = r.seekTo;
              if (stored !== undefined && stored > start) {
                const tail = take.filter((m) => m.offset >= stored);
                // The tail's own start, for the same reason as above: a later line at the stored offset leaves a gap.
                if (tail.length) r = await writeBatch(client, opts.topic, p.partition, parseBatch(tail), tail[0].offset);
              }
              if (r.seekTo !== undefined) throw new ProvenanceError(`partition ${p.partition}: the scratch database expected offset ${r.seekTo}, the replay is at ${start}`);
              p.written += r.written;
            } catch (err) {
              failed = true;
              finish(err as Error);
              return;
            } finally {
              client.release();
            }
          }
          // The batch's last offset also covers records that carry no message (e.g. control records).
          if (!p.done) p.next = p.readTo = Math.max(p.next, Number(batch.lastOffset()) + 1);
          if (p.next >= p.highWatermark) p.done = true;
          if (Date.now() - lastLog > 2000) {
            lastLog = Date.now();
            log(`replay: ${[...parts.values()].reduce((n, x) => n + x.written, 0)} messages written`);
          }
          pauseDone();
        },
      });
      for (const p of parts.values()) {
        if (!p.done) consumer.seek({ topic: opts.topic, partition: p.partition, offset: String(p.from) });
      }
      pauseDone();
      const timeoutMs = opts.timeoutMs ?? 600_000;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        finished,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ProvenanceError(`the replay of ${opts.topic} did not finish within ${timeoutMs / 1000} s (${JSON.stringify(result().partitions)})`)), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
    return result();
  } finally {
    // The group was this replay's alone; leave nothing behind in Kafka.
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}
