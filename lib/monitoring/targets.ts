/**
 * What Prometheus scrapes: every Marquee service at its configured port, Temporal's own metrics,
 * and the inference slots, which the worker lists from the routing state (nightly exists only
 * during a release, so it is discovered rather than configured).
 */
import type { Config } from '../config.ts';

export interface StaticTarget {
  /** The Prometheus job, also the `service` label the alerts name. */
  service: string;
  address: string;
  /** What an operator should look at first when this target is down. */
  firstCheck: string;
}

/** The services `marquee start` runs, plus Temporal's dev server; inference slots come from inferenceSdUrl. */
export function staticTargets(cfg: Config): StaticTarget[] {
  const at = (port: number) => `127.0.0.1:${port}`;
  const s = cfg.services;
  return [
    { service: 'gateway', address: at(s.gateway.port), firstCheck: 'the gateway log (`npx marquee start` output); nobody gets answers while it is down' },
    { service: 'ingest', address: at(s.ingest.port), firstCheck: 'the ingest log, then Kafka and Postgres (`npm run stack -- status`)' },
    { service: 'catalog', address: at(s.catalog.port), firstCheck: 'the catalog log, then the info API (simulator) and ChromaDB' },
    { service: 'simulator', address: at(s.simulator.port), firstCheck: 'the simulator log, then Kafka' },
    { service: 'worker', address: at(s.worker.port), firstCheck: 'the worker log, then Temporal (`npm run stack -- status temporal`)' },
    { service: 'temporal', address: at(cfg.temporal.metricsPort), firstCheck: '`npm run stack -- status temporal` and .marquee/logs/temporal.log' },
  ];
}

/** The worker's HTTP service-discovery endpoint for the inference slots (Prometheus http_sd format). */
export const inferenceSdUrl = (cfg: Config): string => `http://127.0.0.1:${cfg.services.worker.port}/sd/inference`;

/** One http_sd group: Prometheus reads `targets` and `labels` (label values must be strings). */
export interface SdGroup { targets: string[]; labels: Record<string, string> }

/**
 * The inference slots as http_sd groups, from the routing state's URLs. Without a routing row
 * (a fresh database) main is where the config puts it and there is no nightly.
 */
export function inferenceGroups(cfg: Config, routing: { mainUrl: string; mainVersion: string; nightlyUrl: string | null; nightlyVersion: string | null; mainReplicas?: string[]; nightlyReplicas?: string[] } | undefined): SdGroup[] {
  const hostPort = (url: string) => new URL(url).host;
  const firstCheck = (slot: string) => `the ${slot} slot: \`docker ps -a --filter label=marquee.slot=${slot}\` or its process, then its /healthz; the gateway falls back meanwhile`;
  if (!routing) return [{ targets: [`127.0.0.1:${cfg.services.inferenceMain.port}`], labels: { service: 'inference-main', slot: 'main', first_check: firstCheck('main') } }];
  // Every replica of a slot is a target of the slot's group: one series per replica, one slot label.
  const groups: SdGroup[] = [{ targets: [routing.mainUrl, ...(routing.mainReplicas ?? [])].map(hostPort), labels: { service: 'inference-main', slot: 'main', version: routing.mainVersion, first_check: firstCheck('main') } }];
  if (routing.nightlyUrl) groups.push({ targets: [routing.nightlyUrl, ...(routing.nightlyReplicas ?? [])].map(hostPort), labels: { service: 'inference-nightly', slot: 'nightly', version: routing.nightlyVersion ?? '', first_check: firstCheck('nightly') } });
  return groups;
}
