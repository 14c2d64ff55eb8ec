/**
 * Building and deploying a model version into a slot, shared by the release activities and
 * `marquee deploy`. The caller passes the runtime it chose once and a progress callback (an
 * activity heartbeats through it; the CLI passes nothing).
 */
import type { Config } from '../config.ts';
import { buildImage, dockerClient } from '../docker.ts';
import { loadSpec, type LoadedSpec } from '../models/spec.ts';
import type { BuiltImage } from '../release/types.ts';
import { normUrl, type RoutingState } from '../routing.ts';
import { gitCommit } from '../version.ts';
import { inferenceBuildContext } from './image.ts';
import { remoteReplicaUrls } from './replicas.ts';
import { MAX_REPLICAS, slotUrl, type Slot, type SlotRuntime } from './slots.ts';

export type Progress = (details: unknown) => void;
const quiet: Progress = () => undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A spec that cannot be read, or an image that cannot be built: retrying the same step cannot fix either. */
export class DeployError extends Error {
  constructor(message: string, readonly type: 'BadModelSpec' | 'BuildFailed') {
    super(message);
    this.name = 'DeployError';
  }
}

function specOrFail(model: string): LoadedSpec {
  try {
    return loadSpec(model);
  } catch (err) {
    throw new DeployError((err as Error).message, 'BadModelSpec');
  }
}

/**
 * Builds marquee-inference:<version> with the spec baked in. Idempotent: an image of that tag built
 * from the same commit and spec is reused. Without a Docker engine the slot runs as a local process
 * of this checkout, and the "image" records that.
 */
export async function buildOrReuse(runtime: SlotRuntime, a: { version: string; model: string }, progress: Progress = quiet): Promise<BuiltImage> {
  const loaded = specOrFail(a.model);
  const commit = gitCommit();
  if (runtime.kind === 'process') {
    return { image: `process:${commit.slice(0, 12)}`, imageId: '', gitCommit: commit, specHash: loaded.hash, runtime: 'process' };
  }
  const tag = `marquee-inference:${a.version}`;
  const docker = dockerClient();
  const existing = await docker.getImage(tag).inspect().catch(() => undefined);
  const labels = existing?.Config?.Labels ?? {};
  if (existing && labels['marquee.commit'] === commit && labels['marquee.spec-hash'] === loaded.hash) {
    return { image: tag, imageId: existing.Id, gitCommit: commit, specHash: loaded.hash, runtime: 'docker' };
  }
  const ticker = setInterval(() => progress({ step: 'building', tag }), 5000);
  try {
    const context = await inferenceBuildContext(loaded.path);
    const imageId = await buildImage(context, tag, docker, {
      buildargs: { VERSION: a.version, GIT_COMMIT: commit, MODEL: loaded.path },
      labels: { 'marquee.spec-hash': loaded.hash, 'marquee.model': loaded.path },
    });
    return { image: tag, imageId, gitCommit: commit, specHash: loaded.hash, runtime: 'docker' };
  } catch (err) {
    throw new DeployError(`image build failed: ${(err as Error).message}`, 'BuildFailed');
  } finally {
    clearInterval(ticker);
  }
}

/**
 * Waits until the slot's /healthz reports the expected spec hash AND a warm model (vectors loaded,
 * every neighbour list computed), so traffic never meets a half-started version. With warm false
 * only the spec hash counts: the very first main of a fresh install has no vectors to load until
 * the catalog has made them.
 */
export async function waitHealthy(cfg: Config, slot: Slot, specHash: string, opts: { warm?: boolean; timeoutMs?: number; progress?: Progress; replica?: number } = {}): Promise<void> {
  const { warm = true, timeoutMs = 600_000, progress = quiet, replica = 0 } = opts;
  const url = `${slotUrl(cfg, slot, replica)}/healthz`;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    progress({ step: 'health', slot, last });
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { model?: { hash?: string }; degraded?: boolean; vectors?: { neighbours?: { state?: string } } };
      const hash = body.model?.hash;
      const neighbours = body.vectors?.neighbours?.state;
      if (res.ok && hash === specHash && (!warm || (body.degraded === false && neighbours === 'ready'))) return;
      last = `status ${res.status}, model hash ${hash ?? 'none'} (want ${specHash}), degraded ${body.degraded}, neighbours ${neighbours ?? 'unknown'}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(500);
  }
  throw new Error(`${slot} did not become healthy and warm with spec ${specHash} within ${timeoutMs / 1000} s: ${last}`);
}

/** Another machine's replica taken out of the routing state, and why. */
export interface UnnamedReplica { url: string; reason: string }

/** Why a replica's /healthz does not show it running the version label `version` (what the gateway checks a named replica against), or null when it does. */
async function notOnVersion(url: string, version: string, timeoutMs = 2000): Promise<string | null> {
  try {
    const res = await fetch(`${normUrl(url)}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = (await res.json().catch(() => ({}))) as { model?: { version?: unknown } };
    const runs = typeof body.model?.version === 'string' ? body.model.version : null;
    if (res.status !== 200) return `/healthz answered ${res.status}`;
    return runs === version ? null : `runs ${runs ?? 'an unknown version'}, not ${version}`;
  } catch (err) {
    return `/healthz does not answer: ${(err as Error).message}`;
  }
}

/**
 * Which of other machines' replicas of the slot stay named when this machine names `version` there
 * (each machine replaces its own replicas). Under the same version all of them: one that is down
 * now is the gateway's health checks' to skip. Under a new version only those already running it;
 * the others would serve its users another model, so they are unnamed, with the reason.
 */
export async function remoteReplicasUnder(state: Pick<RoutingState, 'mainVersion' | 'nightlyVersion' | 'mainReplicas' | 'nightlyReplicas'>, cfg: Config, slot: Slot, version: string): Promise<{ keep: string[]; unnamed: UnnamedReplica[] }> {
  const remote = remoteReplicaUrls(state, cfg, slot);
  if ((slot === 'main' ? state.mainVersion : state.nightlyVersion) === version) return { keep: remote, unnamed: [] };
  const reasons = await Promise.all(remote.map((url) => notOnVersion(url, version)));
  return {
    keep: remote.filter((_, i) => reasons[i] === null),
    unnamed: remote.flatMap((url, i) => reasons[i] === null ? [] : [{ url, reason: reasons[i]! }]),
  };
}

/** What the operator is told of a replica unnamed for `version` (the worker's log, the CLI's output). */
export function unnamedReplicaText(slot: Slot, r: UnnamedReplica, version: string): string {
  return `unnamed ${slot}'s replica ${r.url} on another machine: it ${r.reason}; name it again with PUT /admin/routing once it runs ${version}`;
}

/** Runs the version in a slot (replacing what runs there) and waits until it serves that spec. */
export async function deployToSlot(cfg: Config, runtime: SlotRuntime, a: { slot: Slot; version: string; model: string; image: BuiltImage; warm?: boolean; replica?: number }, progress: Progress = quiet): Promise<{ url: string; id: string }> {
  const state = await runtime.deploy({ slot: a.slot, version: a.version, model: a.model, image: a.image.runtime === 'docker' ? a.image.image : null, replica: a.replica ?? 0 });
  await waitHealthy(cfg, a.slot, a.image.specHash, { warm: a.warm ?? true, progress, replica: a.replica ?? 0 });
  return { url: state.url, id: state.id };
}

/** The slot's replicas that exist here, running or not, by index (a stopped one still holds its port and name). */
export async function presentReplicas(runtime: SlotRuntime, slot: Slot): Promise<{ replica: number; running: boolean }[]> {
  const present: { replica: number; running: boolean }[] = [];
  for (let k = 0; k < MAX_REPLICAS; k++) {
    const state = await runtime.describe(slot, k);
    if (state) present.push({ replica: k, running: state.running });
  }
  return present;
}

/** How many replicas of the slot run now: the highest running replica's index + 1 (0 when nothing runs). */
export async function runningReplicas(runtime: SlotRuntime, slot: Slot): Promise<number> {
  let n = 0;
  for (const r of await presentReplicas(runtime, slot)) if (r.running) n = r.replica + 1;
  return n;
}

/** Removes the slot's replicas from index `from` on (every replica by default); the indexes of those that were there. */
export async function removeReplicas(runtime: SlotRuntime, slot: Slot, from = 0): Promise<number[]> {
  const removed: number[] = [];
  for (let k = from; k < MAX_REPLICAS; k++) if (await runtime.remove(slot, k)) removed.push(k);
  return removed;
}
