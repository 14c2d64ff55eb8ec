/**
 * Prometheus metrics for every service, on prom-client: one Registry per service (so in-process
 * tests with several services never mix their series), the default process metrics (CPU, memory,
 * event loop, GC) in each, and histograms with explicit buckets.
 *
 * The wrappers keep two things prom-client does not give: `inc(undefined, n)` adds n to an
 * unlabelled metric (prom-client would read undefined as "no value" and add 1), and `get` reads a
 * current value synchronously (services use it in /healthz and in log throttling).
 */
import client from 'prom-client';

export type Labels = Record<string, string | number>;

/** The key of one series for the synchronous reads: its label values in declared order. */
const seriesKey = (names: readonly string[], labels: Labels = {}): string => names.map((n) => String(labels[n] ?? '')).join('\u0000');

export class Counter {
  private readonly values = new Map<string, number>();
  constructor(private readonly metric: client.Counter<string>, private readonly labelNames: readonly string[]) {}
  inc(labels?: Labels, by = 1): void {
    if (labels) this.metric.inc(labels, by);
    else this.metric.inc(by);
    const k = seriesKey(this.labelNames, labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels?: Labels): number { return this.values.get(seriesKey(this.labelNames, labels)) ?? 0; }
  /** Every series added up. */
  total(): number {
    let sum = 0;
    for (const v of this.values.values()) sum += v;
    return sum;
  }
  /**
   * One series for a hot path: its key for get() is built once and no labels object is made per
   * call. prom-client's child still hashes the labels on each inc (15.x), so that is not saved.
   */
  bind(labels: Labels): (by?: number) => void {
    const child = this.metric.labels(labels);
    const k = seriesKey(this.labelNames, labels);
    return (by = 1) => {
      child.inc(by);
      this.values.set(k, (this.values.get(k) ?? 0) + by);
    };
  }
}

export class Gauge {
  private readonly values = new Map<string, number>();
  constructor(private readonly metric: client.Gauge<string>, private readonly labelNames: readonly string[]) {}
  set(labels: Labels | undefined, value: number): void {
    if (labels) this.metric.set(labels, value);
    else this.metric.set(value);
    this.values.set(seriesKey(this.labelNames, labels), value);
  }
  get(labels?: Labels): number | undefined { return this.values.get(seriesKey(this.labelNames, labels)); }
}

export class Histogram {
  constructor(private readonly metric: client.Histogram<string>) {}
  observe(labels: Labels | undefined, value: number): void {
    if (labels) this.metric.observe(labels, value);
    else this.metric.observe(value);
  }
  /** One series for a hot path, without a labels object per call (prom-client still hashes them). */
  bind(labels: Labels): (value: number) => void {
    const child = this.metric.labels(labels);
    return (value) => child.observe(value);
  }
}

export class Registry {
  readonly prom = new client.Registry();

  /** `processMetrics: false` leaves out the default process metrics (for registries that are not a service's). */
  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) client.collectDefaultMetrics({ register: this.prom });
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return new Counter(new client.Counter({ name, help, labelNames, registers: [this.prom] }), labelNames);
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return new Gauge(new client.Gauge({ name, help, labelNames, registers: [this.prom] }), labelNames);
  }

  histogram(name: string, help: string, buckets: number[], labelNames: readonly string[] = []): Histogram {
    return new Histogram(new client.Histogram({ name, help, buckets, labelNames, registers: [this.prom] }));
  }

  get contentType(): string { return this.prom.contentType; }

  /** The exposition text for GET /metrics. */
  render(): Promise<string> { return this.prom.metrics(); }
}

/** Latency buckets in seconds, from 1 ms to 2.5 s (0.6 s is the course's answer budget). */
export const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1, 2.5];
