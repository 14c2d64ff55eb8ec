/**
 * Where the live traffic loop writes its lines. KafkaSink batches them to the topic (every
 * `lingerMs` or `batchSize` lines), keyed by user id, acks from all replicas, and never drops one:
 * a failed send is retried, in order, until it goes through or the sink is closed with a deadline.
 * MemorySink keeps them in an array, for unit tests of the traffic itself.
 */
import type { Message, Producer } from 'kafkajs';
import type { Config } from '../../lib/config.ts';
import { idempotentProducer, kafkaClient } from '../../lib/kafka.ts';

export interface LineSink {
  /** Queues one line; never blocks. `key` is the user id, so a user's lines keep their order. */
  write(key: string, line: string): void;
  /** Lines queued but not yet acknowledged: the traffic loop slows down when this grows. */
  backlog(): number;
  /** Lines acknowledged so far. */
  produced(): number;
  /** Resolves when every line written before the call is acknowledged. */
  flush(): Promise<void>;
  /** Flushes, then releases the connection. */
  close(): Promise<void>;
}

export class MemorySink implements LineSink {
  readonly lines: string[] = [];
  readonly keys: string[] = [];
  write(key: string, line: string): void {
    this.keys.push(key);
    this.lines.push(line);
  }
  backlog(): number { return 0; }
  produced(): number { return this.lines.length; }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface KafkaSinkOptions {
  topic?: string;
  /** Longest a line waits before its batch is sent (ms). */
  lingerMs?: number;
  /** A batch is sent as soon as it has this many lines. */
  batchSize?: number;
  /** Called after a failed send, before it is retried. */
  onError?: (err: Error, attempt: number) => void;
  /** Injected producer (tests); by default an idempotent kafkajs producer on cfg's brokers. */
  producer?: Producer;
}

export class KafkaSink implements LineSink {
  private readonly topic: string;
  private readonly lingerMs: number;
  private readonly batchSize: number;
  private readonly producer: Producer;
  private buffer: Message[] = [];
  private inFlight = 0;
  private acked = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The chain of sends: one at a time, so batches (and each user's lines) reach Kafka in order. */
  private chain: Promise<void> = Promise.resolve();
  private connected: Promise<void> | null = null;
  private closing = false;
  /** Lines still unsent when close() gave up; 0 unless Kafka stayed down past the deadline. */
  unsent = 0;
  sendFailures = 0;

  constructor(cfg: Config, private opts: KafkaSinkOptions = {}) {
    this.topic = opts.topic ?? cfg.kafka.topic;
    this.lingerMs = opts.lingerMs ?? 50;
    this.batchSize = opts.batchSize ?? 1000;
    // Idempotent and retrying without a count limit inside kafkajs: a broker restart only delays
    // the batch, and a retried batch is never written twice. The loop in sendWithRetry is for
    // what kafkajs gives up on (a non-retriable error), so that no line is dropped silently.
    this.producer = opts.producer ?? idempotentProducer(kafkaClient(cfg, 'simulator'));
  }

  connect(): Promise<void> {
    this.connected ??= this.producer.connect();
    return this.connected;
  }

  write(key: string, line: string): void {
    this.buffer.push({ key, value: line });
    if (this.buffer.length >= this.batchSize) this.sendNow();
    else this.timer ??= setTimeout(() => this.sendNow(), this.lingerMs);
  }

  backlog(): number { return this.buffer.length + this.inFlight; }
  produced(): number { return this.acked; }

  flush(): Promise<void> {
    this.sendNow();
    return this.chain;
  }

  /** Flushes with retries for at most `deadlineMs`, then disconnects; `unsent` says what was left. */
  async close(deadlineMs = 30_000): Promise<void> {
    const flushed = this.flush();
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = await Promise.race([
      flushed.then(() => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), deadlineMs); }),
    ]);
    clearTimeout(timer);
    this.closing = true;
    if (gaveUp) this.unsent = this.backlog();
    await this.producer.disconnect().catch(() => undefined);
  }

  private sendNow(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.inFlight += batch.length;
    this.chain = this.chain.then(() => this.sendWithRetry(batch));
  }

  private async sendWithRetry(messages: Message[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.connect();
        await this.producer.send({ topic: this.topic, acks: -1, messages });
        this.inFlight -= messages.length;
        this.acked += messages.length;
        return;
      } catch (err) {
        this.sendFailures++;
        this.opts.onError?.(err as Error, attempt);
        if (this.closing) return;
        // A broken connection must be made again; kafkajs reconnects on the next send.
        this.connected = null;
        await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** Math.min(attempt, 5))));
        if (this.closing) return;
      }
    }
  }
}
