import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Admin, Kafka } from 'kafkajs';
import { loadConfig } from '../lib/config.ts';
import { ensureTopic, ensureTopicOffsets, idempotentProducer, kafkaClient, produceLines } from '../lib/kafka.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();
const [host, port] = cfg.kafka.brokers[0].split(':');
const topic = cfg.kafka.topic;

let client: Kafka;
let admin: Admin;

beforeAll(async () => {
  await requireServer('Kafka', Number(port), host);
  client = kafkaClient(cfg, 'test');
  admin = client.admin();
  await admin.connect();
});

afterAll(async () => {
  await admin?.disconnect();
});

describe('kafka', () => {
  it('has the topic with the configured partition count', async () => {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = meta.topics.find((t) => t.name === topic)?.partitions ?? [];
    expect(partitions.map((p) => p.partitionId).sort((a, b) => a - b)).toEqual([...Array(cfg.kafka.partitions).keys()]);
    // Every partition must have a leader, or producers to it would hang.
    for (const p of partitions) expect(p.leader).toBeGreaterThanOrEqual(0);
  });

  it('delivers every produced message exactly once, in order per partition', async () => {
    const runId = randomUUID().slice(0, 8);
    const count = 400;
    const keys = 16;
    const groupId = `marquee-kafka-test-${runId}`;

    // The end of each partition before producing: the consumer starts there, so it reads only what
    // this test produces (plus whatever else is written meanwhile, which the run id filters out) and
    // not the whole history of a topic that may hold millions of lines.
    const before = await admin.fetchTopicOffsets(topic);

    // Valid watch lines (see the Kafka contract), so an ingest running meanwhile stores them rather than
    // dead-lettering them; the movie slug carries the run id and the minute carries the sequence number.
    const line = (seq: number): string => `${new Date().toISOString().slice(0, 19)},${900_000_000 + (seq % keys)},GET /data/m/marquee+kafka+test+${runId}/${seq}.mpg`;
    const marker = `/marquee+kafka+test+${runId}/`;

    const producer = idempotentProducer(client);
    await producer.connect();
    try {
      // Several sequential sends, so ordering is checked across batches and not only within one.
      for (let start = 0; start < count; start += 50) {
        const messages = [];
        for (let seq = start; seq < Math.min(count, start + 50); seq++) messages.push({ key: `user-${seq % keys}`, value: line(seq) });
        await producer.send({ topic, messages });
      }
    } finally {
      await producer.disconnect();
    }

    const received: { seq: number; key: string; partition: number; offset: bigint }[] = [];
    // A short fetch wait, because disconnect waits for the fetch in flight.
    const consumer = client.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: false });
      let done!: () => void;
      const allIn = new Promise<void>((resolve) => { done = resolve; });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          const value = message.value?.toString() ?? '';
          if (!value.includes(marker)) return;
          const seq = Number(/\/(\d+)\.mpg$/.exec(value)?.[1]);
          received.push({ seq, key: message.key?.toString() ?? '', partition, offset: BigInt(message.offset) });
          if (received.length >= count) done();
        },
      });
      // Seeks made before the group has assigned the partitions are applied on their first fetch, so
      // the group's own starting point (the end of the log, as it has no committed offsets) is never used.
      for (const p of before) consumer.seek({ topic, partition: p.partition, offset: p.high });
      await Promise.race([allIn, new Promise((resolve) => setTimeout(resolve, 60_000))]);
      // A moment more, so that a duplicate delivered right after the last message is caught too.
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      await consumer.disconnect();
      await admin.deleteGroups([groupId]).catch(() => undefined);
    }

    // Exactly once: every sequence number, each a single time.
    const seqs = received.map((r) => r.seq).sort((a, b) => a - b);
    expect(seqs).toEqual([...Array(count).keys()]);

    const start = new Map(before.map((p) => [p.partition, BigInt(p.high)]));
    const partitionsUsed = new Set<number>();
    const keyPartition = new Map<string, number>();
    for (const p of [...Array(cfg.kafka.partitions).keys()]) {
      const inPartition = received.filter((r) => r.partition === p);
      if (inPartition.length > 0) partitionsUsed.add(p);
      // In order per partition: offsets and sequence numbers both only go up, and nothing precedes
      // the offsets recorded before producing.
      for (let i = 1; i < inPartition.length; i++) {
        expect(inPartition[i].offset).toBeGreaterThan(inPartition[i - 1].offset);
        expect(inPartition[i].seq).toBeGreaterThan(inPartition[i - 1].seq);
      }
      for (const r of inPartition) expect(r.offset).toBeGreaterThanOrEqual(start.get(p)!);
    }
    // One key, one partition (what the ingest's per-user ordering relies on), and keys do spread.
    for (const r of received) {
      expect(keyPartition.get(r.key) ?? r.partition).toBe(r.partition);
      keyPartition.set(r.key, r.partition);
    }
    if (cfg.kafka.partitions > 1) expect(partitionsUsed.size).toBeGreaterThan(1);
  });

  it('processes racing to grow a topic with too few partitions all succeed', async () => {
    // The ingest's consumer threads each ensure the topic at start; the loser of a race to add
    // partitions used to fail ("Number of partitions is invalid") and take the service down.
    for (let round = 0; round < 3; round++) {
      const small = `marquee-kafka-grow-${randomUUID().slice(0, 8)}`;
      try {
        expect(await ensureTopic(cfg, small, 1)).toBe(1);
        const grown = await Promise.all(['a', 'b', 'c'].map((who) => ensureTopic(cfg, small, 4, kafkaClient(cfg, `grow-${who}`))));
        expect(grown).toEqual([4, 4, 4]);
      } finally {
        await admin.deleteTopics({ topics: [small] }).catch(() => undefined);
      }
    }
  });

  it('ensureTopicOffsets answers each partition\'s log start and end, as the ingest needs them before its first write', async () => {
    const t = `marquee-kafka-offsets-${randomUUID().slice(0, 8)}`;
    try {
      const created = await ensureTopicOffsets(cfg, t, 2);
      expect(created.partitions).toBe(2);
      expect(created.offsets.map((o) => [o.partition, o.low, o.high]).sort()).toEqual([[0, '0', '0'], [1, '0', '0']]);
      await produceLines(cfg, Array.from({ length: 40 }, (_, i) => `2026-12-03T06:00:00,${i},GET /rate/m=4`), { topic: t });
      const before = await ensureTopicOffsets(cfg, t, 2);
      const full = before.offsets.find((o) => Number(o.high) >= 3);
      expect(full).toBeDefined();
      expect(before.offsets.reduce((n, o) => n + Number(o.high), 0)).toBe(40);
      // Retention (here deleteTopicRecords) moves a log's start: the ingest must not wait for lines below it.
      await admin.fetchTopicMetadata({ topics: [t] });
      await admin.deleteTopicRecords({ topic: t, partitions: [{ partition: full!.partition, offset: '3' }] });
      const after = await ensureTopicOffsets(cfg, t, 2);
      expect(after.offsets.find((o) => o.partition === full!.partition)?.low).toBe('3');
      expect(after.offsets.reduce((n, o) => n + Number(o.high), 0)).toBe(40);
    } finally {
      await admin.deleteTopics({ topics: [t] }).catch(() => undefined);
    }
  });

  it('processes racing to create one new topic each return only once every partition has a leader', async () => {
    // The simulator and the ingest both ensure their topic at start; the one that loses the race
    // used to go on before the partitions were led, and its first offsets request failed.
    for (let round = 0; round < 3; round++) {
      const fresh = `marquee-kafka-race-${randomUUID().slice(0, 8)}`;
      try {
        const racers = ['a', 'b', 'c'].map(async (who) => {
          expect(await ensureTopic(cfg, fresh, 4, kafkaClient(cfg, `race-${who}`))).toBe(4);
          // At once, and with no retries of its own: a missing leader fails this request.
          const probe = kafkaClient(cfg, `race-${who}-probe`, { retry: { retries: 0 } }).admin();
          await probe.connect();
          try {
            const offsets = await probe.fetchTopicOffsets(fresh);
            expect(offsets.map((o) => o.partition).sort()).toEqual([0, 1, 2, 3]);
          } finally {
            await probe.disconnect();
          }
        });
        await Promise.all(racers);
      } finally {
        await admin.deleteTopics({ topics: [fresh] }).catch(() => undefined);
      }
    }
  });
});
