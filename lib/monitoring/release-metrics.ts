/**
 * Metrics read from Postgres at scrape time, for what no process holds in memory: how long the
 * release in flight has been in its current phase, against how long that phase is expected to take
 * (the ReleaseStuck alert compares the two), and the inference slots for Prometheus' discovery.
 */
import client from 'prom-client';
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { durationMs } from '../duration.ts';
import type { Registry } from '../metrics.ts';
import { TERMINAL_PHASES } from '../release/types.ts';
import { inferenceGroups, type SdGroup } from './targets.ts';

/**
 * Expected seconds per phase. The bake is temporal.yaml's default plus one inconclusive extension:
 * a release started with a longer --bake can be reported stuck late, never early by more than that.
 */
export function expectedPhaseSeconds(cfg: Config): Record<string, number> {
  const bake = (durationMs(cfg.release.bake) + durationMs(cfg.release.inconclusiveExtension)) / 1000;
  return {
    'starting': 300, 'offline-eval': 1800, 'building': 900, 'deploying': 600, 'routing': 300,
    'baking': bake, 'online-eval': 900, 'promoting': 900, 'aborting': 600,
  };
}

interface ReleaseRow { id: string; phase: string; since: Date }

async function releasesInFlight(pool: Pool): Promise<ReleaseRow[]> {
  const { rows } = await pool.query<ReleaseRow>(
    `SELECT id, phase, coalesce((phase_times ->> phase)::timestamptz, started_at) AS since
       FROM releases WHERE ended_at IS NULL AND NOT (phase = ANY($1::text[]))`, [TERMINAL_PHASES]);
  return rows;
}

/** Adds marquee_release_phase_age_seconds and marquee_release_phase_expected_seconds to a registry. */
export function registerReleaseMetrics(registry: Registry, cfg: Config, pool: Pool): void {
  const expected = expectedPhaseSeconds(cfg);
  let pending: Promise<ReleaseRow[]> | undefined;
  // Both gauges collect in the same scrape: one query serves them.
  const read = (): Promise<ReleaseRow[]> => (pending ??= releasesInFlight(pool).finally(() => setTimeout(() => { pending = undefined; }, 500)));
  // Both gauges are one per release in flight, labelled alike; only the value differs.
  const perRelease = (name: string, help: string, value: (r: ReleaseRow) => number) => new client.Gauge({
    name, help, labelNames: ['version', 'phase'], registers: [registry.prom],
    async collect() {
      this.reset();
      for (const r of await read()) this.set({ version: r.id, phase: r.phase }, value(r));
    },
  });
  perRelease('marquee_release_phase_age_seconds', 'How long each release in flight has been in its current phase',
    (r) => (Date.now() - r.since.getTime()) / 1000);
  perRelease('marquee_release_phase_expected_seconds', 'How long the current phase of each release in flight is expected to take (from temporal.yaml release defaults)',
    (r) => expected[r.phase] ?? 600);
}

/** The inference slots named by the routing state, as Prometheus http_sd groups. */
export async function inferenceTargets(cfg: Config, pool: Pool): Promise<SdGroup[]> {
  const { rows } = await pool.query<{ main_url: string; main_version: string; nightly_url: string | null; nightly_version: string | null; main_replicas: string[]; nightly_replicas: string[] }>(
    'SELECT main_url, main_version, nightly_url, nightly_version, main_replicas, nightly_replicas FROM routing_state WHERE id = 1');
  const r = rows[0];
  return inferenceGroups(cfg, r && {
    mainUrl: r.main_url, mainVersion: r.main_version, nightlyUrl: r.nightly_url, nightlyVersion: r.nightly_version, mainReplicas: r.main_replicas, nightlyReplicas: r.nightly_replicas,
  });
}
