import { ApplicationFailure, heartbeat } from '@temporalio/activity';
import { loadConfig } from '../lib/config.ts';
import { buildImage, dockerClient } from '../lib/docker.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import { loadSpec } from '../lib/models/spec.ts';
import type { BuiltImage } from '../lib/release/types.ts';
import { chooseRuntime, slotUrl, type Slot } from '../lib/runtime/index.ts';
import { inferenceBuildContext } from '../lib/runtime/image.ts';
import { gitCommit } from '../lib/version.ts';
import { activityPool } from './shared.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Heartbeats inside an activity; the same code also runs from the CLI (marquee deploy), where there is none. */
function beat(details: unknown): void {
  try { heartbeat(details); } catch { /* not in an activity */ }
}

function specOrFail(model: string) {
  try {
    return loadSpec(model);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'BadModelSpec');
  }
}

/**
 * Builds marquee-inference:<version> with the spec baked in. Idempotent: an image of that tag built
 * from the same commit and spec is reused. Without a Docker engine the slot runs as a local process
 * of this checkout, and the "image" records that.
 */
export async function buildInferenceImage(a: { version: string; model: string }): Promise<BuiltImage> {
  const built = await buildOrReuse(a);
  // Recorded at once, so answers served by nightly during the bake already trace to their image.
  await activityPool().query('UPDATE releases SET image = $2, image_digest = $3, git_commit = $4 WHERE id = $1',
    [a.version, built.image, built.imageId || null, built.gitCommit]);
  return built;
}

/** The build itself, also used by `marquee deploy` outside any release. */
export async function buildOrReuse(a: { version: string; model: string }): Promise<BuiltImage> {
  const cfg = loadConfig();
  const loaded = specOrFail(a.model);
  const commit = gitCommit();
  const runtime = await chooseRuntime(cfg);
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
  const ticker = setInterval(() => beat({ step: 'building', tag }), 5000);
  try {
    const context = await inferenceBuildContext(loaded.path);
    const imageId = await buildImage(context, tag, docker, {
      buildargs: { VERSION: a.version, GIT_COMMIT: commit, MODEL: loaded.path },
      labels: { 'marquee.spec-hash': loaded.hash, 'marquee.model': loaded.path },
    });
    return { image: tag, imageId, gitCommit: commit, specHash: loaded.hash, runtime: 'docker' };
  } catch (err) {
    // A build error is in the code or the spec: retrying the same build cannot fix it.
    throw ApplicationFailure.nonRetryable(`image build failed: ${(err as Error).message}`, 'BuildFailed');
  } finally {
    clearInterval(ticker);
  }
}

/**
 * Waits until the slot's /healthz reports the expected spec hash AND a warm model (vectors loaded,
 * every neighbour list computed), so traffic never meets a half-started version. Heartbeats meanwhile.
 * With warm false only the spec hash counts: the very first main of a fresh install has no vectors
 * to load until the catalog has made them.
 */
async function waitHealthy(slot: Slot, specHash: string, warm = true, timeoutMs = 600_000): Promise<void> {
  const url = `${slotUrl(loadConfig(), slot)}/healthz`;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    beat({ step: 'health', slot, last });
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

/** Runs the version in a slot (replacing what runs there) and waits until it serves that spec. */
export async function deploySlot(a: { slot: Slot; version: string; model: string; image: BuiltImage; warm?: boolean }): Promise<{ url: string; id: string }> {
  const cfg = loadConfig();
  const runtime = await chooseRuntime(cfg);
  const state = await runtime.deploy({ slot: a.slot, version: a.version, model: a.model, image: a.image.runtime === 'docker' ? a.image.image : null });
  await waitHealthy(a.slot, a.image.specHash, a.warm ?? true);
  return { url: state.url, id: state.id };
}

/** Removes the slot's container or process; nothing to do when it is gone already. */
export async function removeSlot(a: { slot: Slot }): Promise<boolean> {
  return (await chooseRuntime(loadConfig())).remove(a.slot);
}

/** Routes the release's share to nightly, or (percent 0) everything back to main. */
export async function setRouting(a: { releaseId: string | null; nightlyVersion: string | null; percent: number; by: string }): Promise<void> {
  const cfg = loadConfig();
  const admin = gatewayAdmin(cfg);
  if (a.percent > 0) {
    await admin.put({ nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: a.nightlyVersion, nightlyPercent: a.percent, releaseId: a.releaseId }, a.by);
  } else {
    await admin.put({ nightlyPercent: 0, nightlyUrl: null, nightlyVersion: null, releaseId: null }, a.by);
  }
}

/**
 * Promotion without downtime: all traffic to nightly, main replaced by the new version and checked,
 * all traffic back to main, nightly removed, the image tagged latest. Each step is safe to repeat.
 */
export async function promoteSlot(a: { version: string; model: string; image: BuiltImage; releaseId: string; by: string }): Promise<void> {
  const cfg = loadConfig();
  const admin = gatewayAdmin(cfg);
  const runtime = await chooseRuntime(cfg);
  const nightly = await runtime.describe('nightly');
  if (nightly?.running) {
    await admin.put({ nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: a.version, nightlyPercent: 100, releaseId: a.releaseId }, a.by);
  }
  beat({ step: 'replacing main' });
  await runtime.deploy({ slot: 'main', version: a.version, model: a.model, image: a.image.runtime === 'docker' ? a.image.image : null });
  await waitHealthy('main', a.image.specHash);
  await admin.put({ mainUrl: slotUrl(cfg, 'main'), mainVersion: a.version, nightlyPercent: 0, nightlyUrl: null, nightlyVersion: null, releaseId: null }, a.by);
  await runtime.remove('nightly');
  if (a.image.runtime === 'docker') {
    await dockerClient().getImage(a.image.image).tag({ repo: 'marquee-inference', tag: 'latest' });
  }
}
