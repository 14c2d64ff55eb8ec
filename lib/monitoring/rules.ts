/**
 * Prometheus recording and alerting rules. Recording rules give the dashboard and the alerts one
 * name per question (request rate, p50/p99 and fallback rate per slot, ingest rate and lag); the
 * alerts read those names, with thresholds from the guardrails in temporal.yaml.
 */
import type { Config } from '../config.ts';
import { evalSettings } from '../eval/settings.ts';

export interface AlertTimings {
  /** How long a target must be down before it alerts (the issue asks for more than a minute). */
  targetDown: string;
  /** How long a rate or latency must stay past its limit. */
  sustained: string;
  /** How long ingest lag must keep growing. */
  lagGrowing: string;
}

export const DEFAULT_TIMINGS: AlertTimings = { targetDown: '1m', sustained: '5m', lagGrowing: '10m' };

interface Rule { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }

/** Turns the gateway's `from` label (the slot a fallback was assigned to) into `slot`. */
const fromAsSlot = (expr: string) => `label_replace(${expr}, "slot", "$1", "from", "(.*)")`;

export function recordingRules(): Rule[] {
  const quantile = (q: number, metric: string) => `histogram_quantile(${q}, sum by (slot, le) (rate(${metric}_bucket[1m])))`;
  return [
    { record: 'slot:gateway_requests:rate1m', expr: 'sum by (slot) (rate(gateway_requests_total[1m]))' },
    { record: 'slot:gateway_answers:rate1m', expr: 'sum by (slot) (rate(gateway_answers_total[1m]))' },
    // Answer time seen by users, by who produced the answer (main, nightly, popular).
    { record: 'slot:gateway_latency_seconds:p50', expr: quantile(0.5, 'gateway_request_duration_seconds') },
    { record: 'slot:gateway_latency_seconds:p99', expr: quantile(0.99, 'gateway_request_duration_seconds') },
    // The slots' own answer time; `slot` comes from the worker's discovery of the slots.
    { record: 'slot:inference_latency_seconds:p50', expr: quantile(0.5, 'inference_request_duration_seconds') },
    { record: 'slot:inference_latency_seconds:p99', expr: quantile(0.99, 'inference_request_duration_seconds') },
    // Share of a slot's assigned requests answered by someone else (the guardrail's definition).
    { record: 'slot:gateway_fallback_ratio:rate5m', expr: `sum by (slot) (${fromAsSlot('rate(gateway_fallbacks_total[5m])')}) / sum by (slot) (rate(gateway_requests_total[5m]))` },
    { record: 'slot:gateway_error_ratio:rate5m', expr: 'sum by (slot) (rate(gateway_upstream_errors_total[5m])) / sum by (slot) (rate(gateway_requests_total[5m]))' },
    { record: 'slot:inference_fallbacks:rate1m', expr: 'sum by (slot) (rate(inference_fallbacks_total[1m]))' },
    { record: 'ingest:messages:rate1m', expr: 'sum(rate(ingest_messages_total[1m]))' },
    { record: 'ingest:rows:rate1m', expr: 'sum by (table) (rate(ingest_rows_total[1m]))' },
    { record: 'partition:ingest_consumer_lag:max', expr: 'max by (partition) (ingest_consumer_lag)' },
    { record: 'ingest:consumer_lag:sum', expr: 'sum(ingest_consumer_lag)' },
  ];
}

export function alertRules(cfg: Config, t: AlertTimings = DEFAULT_TIMINGS): Rule[] {
  const g = evalSettings(cfg).guardrails;
  const pct = (x: number) => `${+(x * 100).toFixed(2)} %`;
  return [
    {
      alert: 'TargetDown', expr: 'up == 0', for: t.targetDown, labels: { severity: 'page' },
      annotations: {
        summary: '{{ $labels.service }} is down',
        description: 'Prometheus cannot scrape {{ $labels.service }} at {{ $labels.instance }}: the process is not running or not answering /metrics.',
        first_check: '{{ $labels.first_check }}',
      },
    },
    {
      alert: 'IngestLagGrowing', expr: 'sum(ingest_consumer_lag) > 1000 and sum(deriv(ingest_consumer_lag[5m])) > 0', for: t.lagGrowing, labels: { severity: 'page', service: 'ingest' },
      annotations: {
        summary: 'ingest is falling behind Kafka ({{ $value | humanize }} messages behind)',
        description: 'The consumer lag summed over the partitions of the topic has grown for a while; per partition: partition:ingest_consumer_lag:max.',
        first_check: 'the ingest log for batch errors (ingest_batch_errors_total), then Postgres: slow or failing writes stall every partition',
      },
    },
    {
      // A thread past its heap limit dies, and the process with it: its supervisor starts it again
      // and Postgres' offsets make that lossless, but a heap that keeps near the limit crash-loops.
      alert: 'IngestHeapNearLimit', expr: 'max by (instance, thread) (ingest_thread_heap_used_bytes / ingest_thread_heap_limit_bytes) > 0.85',
      for: t.sustained, labels: { severity: 'page', service: 'ingest' },
      annotations: {
        summary: 'ingest thread {{ $labels.thread }} uses {{ $value | humanizePercentage }} of its heap limit',
        description: 'One consumer thread\'s V8 heap has stayed near the size at which it fails; the process would then exit and be restarted.',
        first_check: 'ingest_thread_gc_seconds_total{kind="major"} of that thread (collecting without freeing?), then Postgres: batches wait in memory while its writes are slow (ingest_batch_seconds)',
      },
    },
    {
      alert: 'FallbackRateHigh', expr: `slot:gateway_fallback_ratio:rate5m > ${g.maxFallbackRate}`, for: t.sustained, labels: { severity: 'page', service: 'gateway' },
      annotations: {
        summary: `slot {{ $labels.slot }} falls back on {{ $value | humanizePercentage }} of its requests (guardrail ${pct(g.maxFallbackRate)})`,
        description: 'Requests assigned to {{ $labels.slot }} are answered by another slot or the popular list.',
        first_check: 'is the slot up and healthy (gateway_slot_up, `curl` its /healthz)? then gateway_fallbacks_total by reason',
      },
    },
    {
      alert: 'ErrorRateHigh', expr: `slot:gateway_error_ratio:rate5m > ${g.maxErrorRate}`, for: t.sustained, labels: { severity: 'page', service: 'gateway' },
      annotations: {
        summary: `slot {{ $labels.slot }} fails {{ $value | humanizePercentage }} of its calls (guardrail ${pct(g.maxErrorRate)})`,
        description: 'The gateway\'s calls to {{ $labels.slot }} time out, are refused or return errors.',
        first_check: 'gateway_upstream_errors_total by kind, then the slot\'s log (`docker logs` of its container or its process log)',
      },
    },
    {
      alert: 'SlotLatencyHigh', expr: `slot:gateway_latency_seconds:p99{slot=~"main|nightly"} > ${g.maxP99LatencyMs / 1000}`, for: t.sustained, labels: { severity: 'page', service: 'gateway' },
      annotations: {
        summary: `p99 answer time of slot {{ $labels.slot }} is {{ $value | humanizeDuration }} (budget ${g.maxP99LatencyMs} ms)`,
        description: 'The 99th percentile of the gateway\'s answer time for answers produced by {{ $labels.slot }} is over the budget.',
        first_check: 'slot:inference_latency_seconds:p99 (the slot itself or the way there?), then the slot\'s CPU (process_cpu_seconds_total) and Postgres',
      },
    },
    {
      alert: 'ReleaseStuck', expr: 'marquee_release_phase_age_seconds > 2 * marquee_release_phase_expected_seconds', for: t.sustained, labels: { severity: 'page', service: 'worker' },
      annotations: {
        summary: 'release {{ $labels.version }} has been in phase {{ $labels.phase }} for {{ $value | humanizeDuration }}',
        description: 'The release has spent more than twice the expected time in one phase.',
        first_check: '`npx marquee status {{ $labels.version }}` and the workflow in the Temporal UI (pending activities, last failure)',
      },
    },
  ];
}

export function rulesFile(cfg: Config, t: AlertTimings = DEFAULT_TIMINGS): { groups: { name: string; interval?: string; rules: Rule[] }[] } {
  return { groups: [{ name: 'marquee-recording', rules: recordingRules() }, { name: 'marquee-alerts', rules: alertRules(cfg, t) }] };
}
