import { Kafka, Partitioners, logLevel, type Admin, type KafkaConfig, type Producer, type ProducerConfig } from 'kafkajs';
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
  const admin = (client ?? kafkaClient(cfg, 'admin')).admin();
  await admin.connect();
  try {
    const state = await describeTopic(admin, topic);
    if (state.partitions === undefined) {
      // Single-node stack, hence replication factor 1; waitForLeaders so producers can write at once.
      // createTopics answers false (not an error) when another process created it meanwhile.
      await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
    } else if (state.partitions < partitions) {
      await admin.createPartitions({ topicPartitions: [{ topic, count: partitions }] });
    }
    const after = await describeTopic(admin, topic);
    if (after.partitions === undefined) throw new Error(`topic ${topic} still missing after creating it`);
    return after.partitions;
  } finally {
    await admin.disconnect();
  }
}
