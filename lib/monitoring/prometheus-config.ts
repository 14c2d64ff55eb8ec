/**
 * The configuration files the project generates for Prometheus and Alertmanager, from temporal.yaml:
 * scrape jobs for every service, the inference slots through the worker's discovery endpoint,
 * the rules, and mail through the stack's SMTP server (or the relay temporal.yaml names).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { Config } from '../config.ts';
import { DEFAULT_TIMINGS, rulesFile, type AlertTimings } from './rules.ts';
import { inferenceSdUrl, staticTargets } from './targets.ts';

export interface MonitoringOptions {
  /** Scrape and rule-evaluation interval (temporal.yaml monitoring.scrapeInterval by default). */
  scrapeInterval?: string;
  /** How often Prometheus asks the worker which inference slots exist. */
  sdRefresh?: string;
  timings?: AlertTimings;
  /** Alertmanager's grouping: how long to wait for more alerts before the first mail, and between mails of one group. */
  groupWait?: string;
  groupInterval?: string;
  /** Only these static jobs (tests that start a few services); every service by default. */
  services?: string[];
}

export interface MonitoringFiles { prometheus: string; rules: string; alertmanager: string; template: string }

export function prometheusConfig(cfg: Config, files: { rules: string }, o: MonitoringOptions = {}): Record<string, unknown> {
  const interval = o.scrapeInterval ?? cfg.monitoring.scrapeInterval;
  const sd = new URL(inferenceSdUrl(cfg));
  return {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: shorter(interval) },
    rule_files: [files.rules],
    alerting: { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${cfg.monitoring.alertmanagerPort}`] }] }] },
    scrape_configs: [
      ...staticTargets(cfg).filter((t) => !o.services || o.services.includes(t.service)).map((t) => ({
        job_name: t.service,
        static_configs: [{ targets: [t.address], labels: { service: t.service, first_check: t.firstCheck } }],
      })),
      {
        job_name: 'inference',
        http_sd_configs: [{ url: sd.href, refresh_interval: o.sdRefresh ?? interval }],
      },
      { job_name: 'prometheus', static_configs: [{ targets: [`127.0.0.1:${cfg.monitoring.prometheusPort}`], labels: { service: 'prometheus', first_check: '.marquee/logs/prometheus.log' } }] },
      { job_name: 'alertmanager', static_configs: [{ targets: [`127.0.0.1:${cfg.monitoring.alertmanagerPort}`], labels: { service: 'alertmanager', first_check: '.marquee/logs/alertmanager.log' } }] },
    ],
  };
}

/** Prometheus refuses a scrape timeout longer than the interval. */
function shorter(interval: string): string {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(interval);
  if (!m) return interval;
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
  return `${Math.min(ms, 10_000)}ms`;
}

/** Mail to temporal.yaml's smtp.to, through smtp.host:port (the stack's mail sink on loopback unless it names a relay). */
export function alertmanagerConfig(cfg: Config, files: { template: string }, o: MonitoringOptions = {}): Record<string, unknown> {
  const { smtp } = cfg;
  return {
    global: { resolve_timeout: '5m' },
    templates: [files.template],
    route: {
      receiver: 'oncall',
      group_by: ['alertname', 'service', 'slot'],
      group_wait: o.groupWait ?? '30s',
      group_interval: o.groupInterval ?? '5m',
      repeat_interval: '4h',
    },
    receivers: [{
      name: 'oncall',
      email_configs: smtp.to.map((to) => ({
        to,
        from: smtp.from,
        smarthost: `${smtp.host}:${smtp.port}`,
        // The local sink speaks plain SMTP; a relay on 465 is implicit TLS (Alertmanager's rule for that port).
        require_tls: smtp.secure,
        send_resolved: true,
        headers: { Subject: '{{ template "marquee.subject" . }}' },
        text: '{{ template "marquee.text" . }}',
        html: '{{ template "marquee.html" . }}',
      })),
    }],
  };
}

/**
 * Each mail: what (summary and description), where (service, instance, slot), since when, and the
 * first thing to check; a resolved mail says when it cleared.
 */
export const MAIL_TEMPLATE = `{{ define "marquee.subject" }}[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}{{ if .CommonLabels.service }}: {{ .CommonLabels.service }}{{ end }}{{ if .CommonLabels.slot }} ({{ .CommonLabels.slot }}){{ end }}{{ end }}
{{ define "marquee.alert" }}{{ if eq .Status "firing" }}FIRING{{ else }}RESOLVED{{ end }}: {{ .Annotations.summary }}
What:        {{ .Annotations.description }}
Where:       service {{ .Labels.service }}{{ if .Labels.instance }} at {{ .Labels.instance }}{{ end }}{{ if .Labels.slot }}, slot {{ .Labels.slot }}{{ end }}
Since:       {{ .StartsAt.UTC.Format "2006-01-02 15:04:05 UTC" }}{{ if eq .Status "resolved" }}
Resolved:    {{ .EndsAt.UTC.Format "2006-01-02 15:04:05 UTC" }}{{ end }}
First check: {{ .Annotations.first_check }}
{{ end }}
{{ define "marquee.text" }}{{ range .Alerts }}{{ template "marquee.alert" . }}
{{ end }}Alerts: {{ .ExternalURL }}{{ end }}
{{ define "marquee.html" }}<pre>{{ range .Alerts }}{{ template "marquee.alert" . }}
{{ end }}</pre>{{ end }}
`;

/** Writes prometheus.yml, rules.yml, alertmanager.yml and mail.tmpl into dir; returns their paths. */
export function writeMonitoringFiles(cfg: Config, dir: string, o: MonitoringOptions = {}): MonitoringFiles {
  mkdirSync(dir, { recursive: true });
  const files: MonitoringFiles = {
    prometheus: path.join(dir, 'prometheus.yml'),
    rules: path.join(dir, 'rules.yml'),
    alertmanager: path.join(dir, 'alertmanager.yml'),
    template: path.join(dir, 'mail.tmpl'),
  };
  const header = '# Generated by lib/monitoring/prometheus-config.ts from temporal.yaml; edits are overwritten.\n';
  writeFileSync(files.rules, header + stringify(rulesFile(cfg, o.timings ?? DEFAULT_TIMINGS), { lineWidth: 0 }));
  writeFileSync(files.prometheus, header + stringify(prometheusConfig(cfg, files, o), { lineWidth: 0 }));
  writeFileSync(files.alertmanager, header + stringify(alertmanagerConfig(cfg, files, o), { lineWidth: 0 }));
  writeFileSync(files.template, MAIL_TEMPLATE);
  return files;
}
