/**
 * V8 flags the ingest process runs with (the supervisor's child, the container, bench:ingest).
 * A batch is held from its fetch until Postgres has it, ~0.5 s, so with the default 16 MB young
 * generation most of each batch survives two scavenges and is copied into the old generation;
 * profiles of a million lines showed garbage collection at twice read-and-discard's. A 64 MB
 * semi-space lets batches die young: measured 1.2-1.6x the msg/s end to end (32 and 128 were no better).
 */
export const INGEST_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/**
 * How the ingest consumer fetches from Kafka. bench:ingest's read-and-discard arm uses the same
 * settings, so that its ratio compares the same client reading the same way.
 */
export const INGEST_FETCH = {
  maxBytesPerPartition: 4 * 1024 * 1024,
  maxBytes: 16 * 1024 * 1024,
  maxWaitTimeInMs: 200,
  /** Partitions whose batches kafkajs hands over side by side (eachBatch calls at once). */
  partitionsConsumedConcurrently: 2,
} as const;

/**
 * Each ingest thread's heap limits (services/ingest/threads.ts): a 192 MB young generation is the
 * 64 MB semi-space of INGEST_NODE_FLAGS (V8's young generation is three semi-spaces), for the
 * same reason.
 */
export const INGEST_THREAD_LIMITS = { maxYoungGenerationSizeMb: 192 } as const;
