/**
 * What the live dashboard draws: series from Prometheus' HTTP API (request rate and p99 per slot,
 * fallback rate, ingest rate and lag) and from Postgres (the release in flight, exposure Gini and
 * coverage over time, and served answers per slot — which also stand in for the request panels
 * when Prometheus does not answer, so the page still says something useful).
 */
import type { Pool } from '../../lib/db.ts';
import { catalogCoverage, giniIndex } from '../../lib/report/metrics.ts';

export type Point = [number, number | null];
export interface Series { name: string; points: Point[] }
export interface Panel { id: string; title: string; unit: string; source: 'prometheus' | 'postgres'; series: Series[]; note: string | null }

export interface DashboardData {
  at: string;
  rangeMs: number;
  prometheus: { url: string; reachable: boolean; error: string | null };
  panels: Panel[];
  release: Record<string, unknown> | null;
}

/**
 * The PromQL behind each Prometheus panel (metric names as the services export them). The fallback
 * counter has no series until the first fallback, so a healthy gateway counts as 0, not "no samples".
 */
export const PROM_QUERIES: { id: string; title: string; unit: string; query: string; legend: string }[] = [
  { id: 'request-rate', title: 'Requests per second by assigned slot', unit: 'req/s', query: 'sum by (slot) (rate(gateway_requests_total[1m]))', legend: 'slot' },
  { id: 'p99', title: 'p99 answer time by answering slot', unit: 's', query: 'histogram_quantile(0.99, sum by (slot, le) (rate(gateway_request_duration_seconds_bucket[5m])))', legend: 'slot' },
  { id: 'fallback-rate', title: 'Fallback rate', unit: 'share', query: '(sum(rate(gateway_fallbacks_total[5m])) or 0 * sum(rate(gateway_requests_total[5m]))) / sum(rate(gateway_requests_total[5m]))', legend: '' },
  { id: 'ingest-rate', title: 'Ingest: messages written per second', unit: 'msg/s', query: 'sum(rate(ingest_messages_total[1m]))', legend: '' },
  { id: 'ingest-lag', title: 'Ingest: consumer lag (messages)', unit: 'messages', query: 'sum(ingest_consumer_lag)', legend: '' },
];

interface PromRange { status: string; error?: string; data?: { result: { metric: Record<string, string>; values: [number, string][] }[] } }

async function promRange(url: string, query: string, startS: number, endS: number, stepS: number): Promise<Series[]> {
  const u = new URL('/api/v1/query_range', url);
  u.searchParams.set('query', query);
  u.searchParams.set('start', String(startS));
  u.searchParams.set('end', String(endS));
  u.searchParams.set('step', String(stepS));
  const res = await fetch(u, { signal: AbortSignal.timeout(3000) });
  const body = (await res.json()) as PromRange;
  if (body.status !== 'success' || !body.data) throw new Error(`Prometheus: ${body.error ?? res.status}`);
  return body.data.result.map((r) => ({
    name: Object.values(r.metric).join(',') || 'all',
    points: r.values.map(([t, v]) => [t * 1000, Number.isFinite(Number(v)) ? Number(v) : null] as Point),
  }));
}

export async function prometheusPanels(url: string, rangeMs: number, now: number): Promise<{ reachable: boolean; error: string | null; panels: Panel[] }> {
  const stepS = Math.max(15, Math.round(rangeMs / 1000 / 120));
  try {
    const series = await Promise.all(PROM_QUERIES.map((q) => promRange(url, q.query, Math.floor((now - rangeMs) / 1000), Math.floor(now / 1000), stepS)));
    return {
      reachable: true, error: null,
      panels: PROM_QUERIES.map((q, i) => ({ id: q.id, title: q.title, unit: q.unit, source: 'prometheus', series: series[i], note: series[i].length ? null : 'no samples yet' })),
    };
  } catch (err) {
    const error = (err as Error).message;
    return {
      reachable: false, error,
      panels: PROM_QUERIES.map((q) => ({ id: q.id, title: q.title, unit: q.unit, source: 'prometheus', series: [], note: `Prometheus not reachable at ${url} (${error})` })),
    };
  }
}

/** Bucket width for a range: about 36 points. */
export const bucketMs = (rangeMs: number) => Math.max(60_000, Math.round(rangeMs / 36 / 60_000) * 60_000);

export async function postgresPanels(db: Pick<Pool, 'query'>, rangeMs: number, now: number): Promise<Panel[]> {
  const bucket = bucketMs(rangeMs);
  const from = new Date(now - rangeMs);
  const [exposure, catalog, answers] = await Promise.all([
    db.query<{ b: Date; n: number }>(
      `SELECT date_bin($2 * interval '1 millisecond', served_at, 'epoch'::timestamptz) AS b, count(*)::int AS n
       FROM served_recommendations s, unnest(s.movie_ids) m WHERE served_at >= $1 GROUP BY b, m ORDER BY b`, [from, bucket]),
    db.query<{ n: number }>('SELECT count(*)::int AS n FROM movies'),
    db.query<{ b: Date; slot: string; n: number; p99: number | null; fb: number }>(
      `SELECT date_bin($2 * interval '1 millisecond', served_at, 'epoch'::timestamptz) AS b, slot, count(*)::int AS n,
              percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99, count(*) FILTER (WHERE fallback IS NOT NULL OR slot = 'popular')::int AS fb
       FROM served_recommendations WHERE served_at >= $1 GROUP BY b, slot ORDER BY b`, [from, bucket]),
  ]);
  const perBucket = new Map<number, number[]>();
  for (const r of exposure.rows) {
    const k = r.b.getTime();
    let a = perBucket.get(k);
    if (!a) perBucket.set(k, (a = []));
    a.push(r.n);
  }
  const n = catalog.rows[0].n;
  const gini: Point[] = [], coverage: Point[] = [];
  for (const [t, counts] of [...perBucket].sort((x, y) => x[0] - y[0])) {
    const size = Math.max(n, counts.length);
    gini.push([t, giniIndex(counts, size)]);
    coverage.push([t, catalogCoverage(counts.length, size)]);
  }
  const bySlot = new Map<string, Point[]>(), p99 = new Map<string, Point[]>();
  const total = new Map<number, { n: number; fb: number }>();
  for (const r of answers.rows) {
    const t = r.b.getTime();
    if (!bySlot.has(r.slot)) { bySlot.set(r.slot, []); p99.set(r.slot, []); }
    bySlot.get(r.slot)!.push([t, r.n / (bucket / 1000)]);
    p99.get(r.slot)!.push([t, r.p99 === null ? null : r.p99 / 1000]);
    const a = total.get(t) ?? { n: 0, fb: 0 };
    a.n += r.n; a.fb += r.fb;
    total.set(t, a);
  }
  const note = (s: Series[]) => (s.some((x) => x.points.length) ? null : `no lists served in the last ${Math.round(rangeMs / 60_000)} min`);
  const g: Series[] = [{ name: 'Gini', points: gini }], c: Series[] = [{ name: 'coverage', points: coverage }];
  const answersSeries = [...bySlot].map(([name, points]) => ({ name, points }));
  const p99Series = [...p99].map(([name, points]) => ({ name, points }));
  const fb: Series[] = [{ name: 'fallback share', points: [...total].sort((x, y) => x[0] - y[0]).map(([t, a]) => [t, a.n ? a.fb / a.n : null] as Point) }];
  return [
    { id: 'exposure-gini', title: `Exposure Gini per ${bucket / 60_000} min`, unit: 'Gini', source: 'postgres', series: g, note: note(g) },
    { id: 'exposure-coverage', title: `Catalogue coverage per ${bucket / 60_000} min`, unit: 'share', source: 'postgres', series: c, note: note(c) },
    { id: 'served-rate', title: 'Answers served per second by answering slot (Postgres)', unit: 'answers/s', source: 'postgres', series: answersSeries, note: note(answersSeries) },
    { id: 'served-p99', title: 'p99 answer time by answering slot (Postgres)', unit: 's', source: 'postgres', series: p99Series, note: note(p99Series) },
    { id: 'served-fallback', title: 'Fallback share of answers (Postgres)', unit: 'share', source: 'postgres', series: fb, note: note(fb) },
  ];
}

/** The release in flight (not ended), else the last one, with the routing step and its recorded numbers. */
export async function releaseInFlight(db: Pick<Pool, 'query'>): Promise<Record<string, unknown> | null> {
  const { rows } = await db.query<Record<string, unknown>>(
    `SELECT r.id, r.model_spec, r.phase, r.phase_times, r.metrics, r.decision, r.reason, r.started_at, r.ended_at,
            rs.nightly_percent, rs.release_id = r.id AS routed
     FROM releases r LEFT JOIN routing_state rs ON rs.id = 1
     ORDER BY (r.ended_at IS NULL) DESC, r.started_at DESC LIMIT 1`);
  return rows[0] ?? null;
}

export async function dashboardData(db: Pick<Pool, 'query'>, prometheusUrl: string, rangeMs: number, now = Date.now()): Promise<DashboardData> {
  const [prom, pg, release] = await Promise.all([prometheusPanels(prometheusUrl, rangeMs, now), postgresPanels(db, rangeMs, now), releaseInFlight(db)]);
  return { at: new Date(now).toISOString(), rangeMs, prometheus: { url: prometheusUrl, reachable: prom.reachable, error: prom.error }, panels: [...prom.panels, ...pg], release };
}
