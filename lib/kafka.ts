import { Kafka, Partitioners, logLevel, type Admin, type KafkaConfig, type Message, type Producer, type ProducerConfig } from 'kafkajs';
import type { Config } from './config.ts';

// kafkajs 2 warns on every producer made without an explicit partitioner that its default changed
// in 2.0; the new default (murmur2, like the Java client) is the one we want, so that is only noise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

export interface KafkaClientOptions {
  /** kafkajs log level; WARN by default, ERROR when MARQUEE_KAFKA_QUIET=1, NOTHING for probes. */
  logLevel?: logLevel;
  /** Override of the retry policy, e.g. `{ retries: 0 }` for a health probe that must answer fast. */
  retry?: KafkaConfig['retry'];
  connectionTimeout?: number;
  requestTimeout?: number;
}

/**
 * A kafkajs client for the configured brokers. The client id is cfg.kafka.clientId plus an optional
 * suffix so that the broker's logs and quotas can tell the ingest, simulator and tools apart.
 */
export function kafkaClient(cfg: Config, clientIdSuffix?: string, opts: KafkaClientOptions = {}): Kafka {
  return new Kafka({
    clientId: clientIdSuffix ? `${cfg.kafka.clientId}-${clientIdSuffix}` : cfg.kafka.clientId,
    brokers: cfg.kafka.brokers,
    logLevel: opts.logLevel ?? (process.env.MARQUEE_KAFKA_QUIET === '1' ? logLevel.ERROR : logLevel.WARN),
    connectionTimeout: opts.connectionTimeout ?? 3000,
    requestTimeout: opts.requestTimeout ?? 30_000,
    // A broker restart (stack down/up) takes a few seconds; ~30 s of back-off rides it out without
    // hiding a broker that is really gone for minutes.
    retry: opts.retry ?? { initialRetryTime: 300, maxRetryTime: 5000, retries: 8 },
  });
}

/**
 * An idempotent producer (no duplicates or reordering on retries). kafkajs merges the client's
 * bounded retry policy into producers and then warns that limited retries void the idempotence
 * guarantees, so this one retries without a count limit; callers bound it with their own timeouts.
 */
export function idempotentProducer(client: Kafka, extra: ProducerConfig = {}): Producer {
  return client.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
    ...extra,
    retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 5000, ...extra.retry },
  });
}

export interface TopicState {
  topic: string;
  /** Number of partitions the broker reports, or undefined when the topic does not exist. */
  partitions: number | undefined;
}

/** Reads a topic's partition count through an already connected admin client. */
export async function describeTopic(admin: Admin, topic: string): Promise<TopicState> {
  const names = await admin.listTopics();
  if (!names.includes(topic)) return { topic, partitions: undefined };
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  return { topic, partitions: meta.topics.find((t) => t.name === topic)?.partitions.length };
}

/**
 * Creates the topic with `partitions` partitions when it is missing, or adds partitions when it has
 * fewer (Kafka cannot remove partitions, so a topic with more is left alone and reported).
 * Returns the partition count the topic ends up with.
 */
export async function ensureTopic(cfg: Config, topic = cfg.kafka.topic, partitions = cfg.kafka.partitions, client?: Kafka): Promise<number> {
  return (await ensureTopicOffsets(cfg, topic, partitions, client)).partitions;
}

/**
 * ensureTopic, answering also the topic's partition offsets it reads anyway: the ingest needs the
 * start of each partition's log before its first write, and a second admin connection for it
 * would sit on its start-up path.
 */
export async function ensureTopicOffsets(cfg: Config, topic = cfg.kafka.topic, partitions = cfg.kafka.partitions, client?: Kafka,
  log?: (line: string) => void): Promise<{ partitions: number; offsets: Offsets }> {
  const admin = (client ?? kafkaClient(cfg, 'admin')).admin();
  await admin.connect();
  try {
    let state = await describeTopic(admin, topic);
    if (state.partitions === undefined) {
      // Single-node stack, hence replication factor 1; waitForLeaders so producers can write at once.
      // createTopics answers false (not an error) when another process created it meanwhile.
      await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
      state = await describeTopic(admin, topic);
    } else if (state.partitions < partitions) {
      // Another process (or another ingest thread) may grow it meanwhile: the broker then refuses a
      // count that is no longer larger ("Number of partitions is invalid"). Only a topic still short
      // of partitions is an error.
      const refused = await admin.createPartitions({ topicPartitions: [{ topic, count: partitions }] }).then(() => undefined, (err: unknown) => err);
      state = await describeTopic(admin, topic);
      if (refused !== undefined && (state.partitions ?? 0) < partitions) throw refused;
    }
    if (state.partitions === undefined) throw new Error(`topic ${topic} still missing after creating it`);
    // createTopics waits for leaders only when this call created the topic: a process that lost the
    // race to another (simulator and ingest both ensure it) would go on before the partitions are led.
    const offsets = await topicOffsets(admin, topic, { log });
    return { partitions: state.partitions, offsets };
  } finally {
    await admin.disconnect();
  }
}

type Offsets = Awaited<ReturnType<Admin['fetchTopicOffsets']>>;

/**
 * The topic's partition offsets. A topic created a moment ago may have no partition leader yet
 * ("This server is not the leader for that topic-partition"): that passes within seconds, so it is
 * waited out (up to `waitMs`) instead of failing the caller; any other error is thrown at once.
 */
export async function topicOffsets(admin: Admin, topic: string, opts: { waitMs?: number; log?: (line: string) => void } = {}): Promise<Offsets> {
  const deadline = Date.now() + (opts.waitMs ?? 15_000);
  for (let attempt = 1; ; attempt++) {
    try {
      return await admin.fetchTopicOffsets(topic);
    } catch (err) {
      const retriable = (err as { retriable?: boolean }).retriable === true || /leader/i.test((err as Error).message);
      if (!retriable || Date.now() >= deadline) throw err;
      if (attempt === 1) opts.log?.(`offsets of ${topic} not available yet (${(err as Error).message}); retrying`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** The user id of a course line (text between the first two commas), the Kafka key; null if none. */
export function userKeyOf(line: string): string | null {
  const a = line.indexOf(',');
  if (a < 0) return null;
  const b = line.indexOf(',', a + 1);
  return b < 0 ? null : line.slice(a + 1, b);
}

export interface ProduceOptions {
  /** Defaults to cfg.kafka.topic. */
  topic?: string;
  /** The message key of a line; defaults to its user id so a user's lines stay in one partition, in order. */
  keyOf?: (line: string) => string | null;
  /** Upper bound of one produce request's payload; must stay under the broker's message.max.bytes (1 MiB). */
  chunkBytes?: number;
  /** Called after each acknowledged chunk with the running total. */
  onProgress?: (produced: number) => void;
}

/**
 * Produces the lines to Kafka in order, in large batches with acks from all replicas and no
 * compression, and resolves to the number of lines acknowledged (all of them, or it throws).
 * The producer is idempotent: a retried batch is not written twice. Chunks go one after the other
 * so that per-key order holds even across retries.
 */
export async function produceLines(cfg: Config, lines: readonly string[], opts: ProduceOptions = {}): Promise<number> {
  const topic = opts.topic ?? cfg.kafka.topic;
  const keyOf = opts.keyOf ?? userKeyOf;
  // A chunk's messages spread over partitions, each partition's share one record batch that must
  // fit message.max.bytes (1 MiB); a chunk below that keeps every share under it. Not much bigger
  // than ~256 kB either: kafkajs groups a send's messages per partition with a copy per message
  // (quadratic), and measured here 100 kB chunks ran 70k lines/s, 200-400 kB 90k/s, 900 kB 41k/s.
  const chunkBytes = opts.chunkBytes ?? 256_000;
  const producer = idempotentProducer(kafkaClient(cfg, 'produce-lines'));
  await producer.connect();
  let produced = 0;
  try {
    let i = 0;
    while (i < lines.length) {
      const messages: Message[] = [];
      let bytes = 0;
      // ~70 bytes of record overhead per message on top of key and value.
      while (i < lines.length && (messages.length === 0 || bytes + lines[i].length + 80 <= chunkBytes)) {
        const value = lines[i++];
        const key = keyOf(value);
        bytes += value.length + (key?.length ?? 0) + 70;
        messages.push({ key, value });
      }
      await producer.send({ topic, acks: -1, messages });
      produced += messages.length;
      opts.onProgress?.(produced);
    }
  } finally {
    await producer.disconnect();
  }
  return produced;
}
