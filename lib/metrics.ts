/**
 * A small Prometheus text-format registry: counters, gauges and histograms with labels.
 * Enough for /metrics on every service without another dependency.
 */
type Labels = Record<string, string | number>;

const labelKey = (labels: Labels = {}): string =>
  Object.keys(labels).sort().map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');

abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly type: string) {}
  abstract lines(): string[];
}

export class Counter extends Metric {
  private values = new Map<string, number>();
  constructor(name: string, help: string) { super(name, help, 'counter'); }
  inc(labels?: Labels, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels?: Labels): number { return this.values.get(labelKey(labels)) ?? 0; }
  lines(): string[] { return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`); }
}

export class Gauge extends Metric {
  private values = new Map<string, number>();
  constructor(name: string, help: string) { super(name, help, 'gauge'); }
  set(labels: Labels | undefined, value: number): void { this.values.set(labelKey(labels), value); }
  get(labels?: Labels): number | undefined { return this.values.get(labelKey(labels)); }
  lines(): string[] { return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`); }
}

export class Histogram extends Metric {
  private series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, readonly buckets: number[]) { super(name, help, 'histogram'); }
  observe(labels: Labels | undefined, value: number): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  lines(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{${sep}le="${b}"} ${s.counts[i]}`));
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  private metrics: Metric[] = [];
  counter(name: string, help: string): Counter { return this.add(new Counter(name, help)); }
  gauge(name: string, help: string): Gauge { return this.add(new Gauge(name, help)); }
  histogram(name: string, help: string, buckets: number[]): Histogram { return this.add(new Histogram(name, help, buckets)); }
  private add<T extends Metric>(m: T): T { this.metrics.push(m); return m; }
  render(): string {
    return this.metrics.flatMap((m) => [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.lines()]).join('\n') + '\n';
  }
}

/** Latency buckets in seconds, from 1 ms to 2.5 s. */
export const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1, 2.5];
