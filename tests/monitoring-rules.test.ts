/**
 * The generated alert and recording rules, evaluated by Prometheus' own rule engine (`promtool
 * test rules`, from Debian's prometheus package) against synthetic series: each alert fires on
 * the numbers it is about, not before its delay, and not on healthy numbers.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../lib/config.ts';
import { alertmanagerConfig, prometheusConfig, writeMonitoringFiles } from '../lib/monitoring/prometheus-config.ts';
import { alertRules } from '../lib/monitoring/rules.ts';

const cfg = loadConfig();
const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-rules-'));
const files = writeMonitoringFiles(cfg, dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function promtool(args: string[]): { code: number; output: string } {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: dir });
  if (r.error) throw new Error(`promtool (Debian's prometheus package; \`npm run stack -- up prometheus\` installs it): ${r.error.message}`);
  return { code: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

/** One promtool rule test: series (1m apart), then alerts expected at given times. */
function ruleTest(name: string, series: Record<string, string>, alerts: { at: string; alertname: string; expected: { labels: Record<string, string>; summary: string }[] }[], queries: { at: string; expr: string; expected: { labels: string; value: number }[] }[] = []): string {
  const file = path.join(dir, `${name}.test.yml`);
  writeFileSync(file, stringify({
    rule_files: [files.rules],
    evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: Object.entries(series).map(([s, values]) => ({ series: s, values })),
      alert_rule_test: alerts.map((a) => ({ eval_time: a.at, alertname: a.alertname, exp_alerts: a.expected.map((e) => ({ exp_labels: e.labels, exp_annotations: annotations(e.labels, e.summary) })) })),
      promql_expr_test: queries.map((q) => ({ expr: q.expr, eval_time: q.at, exp_samples: q.expected })),
    }],
  }));
  return file;
}

/**
 * What the mail will say: the rule's description and first check with the alert's labels filled
 * in, and the summary (which quotes the value) as the test expects it.
 */
function annotations(labels: Record<string, string>, summary: string): Record<string, string> {
  const rule = alertRules(cfg).find((r) => r.alert === labels.alertname)!;
  const fill = (t: string) => t.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, k: string) => labels[k] ?? '');
  return { summary, description: fill(rule.annotations!.description), first_check: fill(rule.annotations!.first_check) };
}

/** Runs the test file; promtool prints which expectation failed. */
function expectPass(file: string): void {
  const r = promtool(['test', 'rules', file]);
  expect(r.output).toContain('SUCCESS');
  expect(r.code).toBe(0);
}

describe('generated Prometheus and Alertmanager files', () => {
  it('pass promtool and amtool checks', () => {
    expect(promtool(['check', 'config', files.prometheus]).code).toBe(0);
    expect(execFileSync('amtool', ['check-config', files.alertmanager], { encoding: 'utf8' })).toContain('SUCCESS');
  });

  it('scrape every service of temporal.yaml, Temporal, and the slots through the worker', () => {
    const p = prometheusConfig(cfg, files) as { scrape_configs: { job_name: string; static_configs?: { targets: string[] }[]; http_sd_configs?: { url: string }[] }[] };
    const jobs = Object.fromEntries(p.scrape_configs.map((j) => [j.job_name, j]));
    expect(jobs.gateway.static_configs?.[0].targets).toEqual([`127.0.0.1:${cfg.services.gateway.port}`]);
    expect(jobs.ingest.static_configs?.[0].targets).toEqual([`127.0.0.1:${cfg.services.ingest.port}`]);
    expect(jobs.temporal.static_configs?.[0].targets).toEqual([`127.0.0.1:${cfg.temporal.metricsPort}`]);
    expect(jobs.inference.http_sd_configs?.[0].url).toBe(`http://127.0.0.1:${cfg.services.worker.port}/sd/inference`);
    expect(Object.keys(jobs).sort()).toEqual(['alertmanager', 'catalog', 'gateway', 'inference', 'ingest', 'prometheus', 'simulator', 'temporal', 'worker']);
  });

  it('mail every address of smtp.to through smtp.host:port, resolved mails included', () => {
    const a = alertmanagerConfig({ ...cfg, smtp: { ...cfg.smtp, host: 'relay.example.org', port: 587, secure: true, to: ['a@x.org', 'b@x.org'] } }, files) as { receivers: { email_configs: { to: string; smarthost: string; send_resolved: boolean; require_tls: boolean }[] }[] };
    expect(a.receivers[0].email_configs.map((e) => [e.to, e.smarthost, e.send_resolved, e.require_tls])).toEqual([
      ['a@x.org', 'relay.example.org:587', true, true], ['b@x.org', 'relay.example.org:587', true, true],
    ]);
  });
});

describe('alert rules on Prometheus\' rule engine', () => {
  it('TargetDown fires after a minute down, naming the service', () => {
    const labels = { alertname: 'TargetDown', severity: 'page', job: 'ingest', service: 'ingest', instance: '127.0.0.1:8091', first_check: 'x' };
    expectPass(ruleTest('target-down', { 'up{job="ingest",service="ingest",instance="127.0.0.1:8091",first_check="x"}': '1 1 0 0 0 0' }, [
      { at: '2m', alertname: 'TargetDown', expected: [] },
      { at: '3m', alertname: 'TargetDown', expected: [{ labels, summary: 'ingest is down' }] },
    ]));
  });

  it('SlotLatencyHigh fires when a slot\'s p99 stays over 600 ms, and the recorded p99 says how much', () => {
    // 100 answers a minute for main: 95 within 0.5 s, 5 between 0.6 s and 1 s; p99 interpolates to ~0.92 s.
    const b = (le: string, perMin: number) => [`gateway_request_duration_seconds_bucket{slot="main",le="${le}"}`, `0+${perMin}x15`];
    const series = Object.fromEntries([b('0.5', 95), b('0.6', 95), b('1', 100), b('+Inf', 100)]);
    expectPass(ruleTest('latency', series, [
      { at: '4m', alertname: 'SlotLatencyHigh', expected: [] },
      { at: '10m', alertname: 'SlotLatencyHigh', expected: [{ labels: { alertname: 'SlotLatencyHigh', severity: 'page', service: 'gateway', slot: 'main' }, summary: 'p99 answer time of slot main is 920ms (budget 600 ms)' }] },
    ], [{ at: '10m', expr: 'round(slot:gateway_latency_seconds:p99, 0.01)', expected: [{ labels: '{slot="main"}', value: 0.92 }] }]));
  });

  it('FallbackRateHigh fires over the guardrail and not under it', () => {
    expectPass(ruleTest('fallback', {
      'gateway_requests_total{slot="nightly"}': '0+100x20',
      'gateway_fallbacks_total{from="nightly",to="main",reason="timeout"}': '0+10x20',
      'gateway_requests_total{slot="main"}': '0+100x20',
      'gateway_fallbacks_total{from="main",to="popular",reason="timeout"}': '0+1x20',
    }, [{ at: '15m', alertname: 'FallbackRateHigh', expected: [{ labels: { alertname: 'FallbackRateHigh', severity: 'page', service: 'gateway', slot: 'nightly' }, summary: 'slot nightly falls back on 10% of its requests (guardrail 5 %)' }] }],
    [{ at: '15m', expr: 'slot:gateway_fallback_ratio:rate5m', expected: [{ labels: 'slot:gateway_fallback_ratio:rate5m{slot="main"}', value: 0.01 }, { labels: 'slot:gateway_fallback_ratio:rate5m{slot="nightly"}', value: 0.1 }] }]));
  });

  it('ErrorRateHigh fires when a slot fails more calls than the guardrail allows', () => {
    expectPass(ruleTest('errors', {
      'gateway_requests_total{slot="nightly"}': '0+100x20',
      'gateway_upstream_errors_total{slot="nightly",kind="timeout"}': '0+5x20',
    }, [{ at: '15m', alertname: 'ErrorRateHigh', expected: [{ labels: { alertname: 'ErrorRateHigh', severity: 'page', service: 'gateway', slot: 'nightly' }, summary: 'slot nightly fails 5% of its calls (guardrail 2 %)' }] }]));
  });

  it('IngestLagGrowing fires when the lag keeps growing, not when it is large but shrinking', () => {
    expectPass(ruleTest('lag', {
      'ingest_consumer_lag{partition="0"}': '2000+100x30',
      'ingest_consumer_lag{partition="1"}': '0x30',
    }, [
      { at: '5m', alertname: 'IngestLagGrowing', expected: [] },
      { at: '25m', alertname: 'IngestLagGrowing', expected: [{ labels: { alertname: 'IngestLagGrowing', severity: 'page', service: 'ingest' }, summary: 'ingest is falling behind Kafka (4.5k messages behind)' }] },
    ]));
    expectPass(ruleTest('lag-shrinking', { 'ingest_consumer_lag{partition="0"}': '20000-100x30' }, [{ at: '25m', alertname: 'IngestLagGrowing', expected: [] }]));
  });

  it('IngestHeapNearLimit fires for the one thread whose heap stays near its limit, not for a passing peak', () => {
    const gb = 1024 ** 3;
    expectPass(ruleTest('heap', {
      // Thread 2 climbs to 90 % of a 2 GiB limit and stays; thread 3 peaks at 95 % for 2 minutes only.
      'ingest_thread_heap_used_bytes{thread="2",instance="127.0.0.1:8091",job="ingest"}': `${0.5 * gb}+${0.1 * gb}x13 ${1.8 * gb}x20`,
      'ingest_thread_heap_limit_bytes{thread="2",instance="127.0.0.1:8091",job="ingest"}': `${2 * gb}x35`,
      'ingest_thread_heap_used_bytes{thread="3",instance="127.0.0.1:8091",job="ingest"}': `${0.4 * gb}x20 ${1.9 * gb}x2 ${0.4 * gb}x12`,
      'ingest_thread_heap_limit_bytes{thread="3",instance="127.0.0.1:8091",job="ingest"}': `${2 * gb}x35`,
    }, [
      { at: '14m', alertname: 'IngestHeapNearLimit', expected: [] },
      { at: '25m', alertname: 'IngestHeapNearLimit', expected: [{ labels: { alertname: 'IngestHeapNearLimit', severity: 'page', service: 'ingest', thread: '2', instance: '127.0.0.1:8091' }, summary: 'ingest thread 2 uses 90% of its heap limit' }] },
    ]));
  });

  it('ReleaseStuck fires when a phase lasts more than twice its expected time', () => {
    // deploying is expected to take 10 minutes; this one has been at it for 30.
    expectPass(ruleTest('stuck', {
      'marquee_release_phase_age_seconds{version="v9",phase="deploying",job="worker"}': '0+60x40',
      'marquee_release_phase_expected_seconds{version="v9",phase="deploying",job="worker"}': '600x40',
    }, [
      { at: '15m', alertname: 'ReleaseStuck', expected: [] },
      { at: '30m', alertname: 'ReleaseStuck', expected: [{ labels: { alertname: 'ReleaseStuck', severity: 'page', service: 'worker', version: 'v9', phase: 'deploying', job: 'worker' }, summary: 'release v9 has been in phase deploying for 30m 0s' }] },
    ]));
  });
});
