import { ApplicationFailure, log } from '@temporalio/activity';
import { dockerClient } from '../lib/docker.ts';
import type { BuiltImage } from '../lib/release/types.ts';
import { buildOrReuse, DeployError, deployToSlot, remoteReplicasUnder, removeReplicas, runningReplicas, unnamedReplicaText, waitHealthy, type UnnamedReplica } from '../lib/runtime/deploy.ts';
import { slotUrl, type Slot } from '../lib/runtime/index.ts';
import { localReplicaUrls, namedReplicaCount } from '../lib/runtime/replicas.ts';
import type { ActivityDeps } from './deps.ts';
import { heartbeat } from './heartbeat.ts';

/** A bad spec or a failed build is in the code or the spec: Temporal must not retry it. */
async function final<T>(step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (err) {
    if (err instanceof DeployError) throw ApplicationFailure.nonRetryable(err.message, err.type);
    throw err;
  }
}

/** The activities that build, run and route model versions. Each step is safe to repeat. */
export function containerActivities({ cfg, pool, runtime, gateway }: ActivityDeps) {
  return {
    /** Builds the version's image (or reuses it) and records it at once, so nightly's answers trace to it. */
    async buildInferenceImage(a: { version: string; model: string }): Promise<BuiltImage> {
      const built = await final(buildOrReuse(runtime, a, heartbeat));
      await pool.query('UPDATE releases SET image = $2, image_digest = $3, git_commit = $4 WHERE id = $1',
        [a.version, built.image, built.imageId || null, built.gitCommit]);
      return built;
    },

    /** Runs the version in a slot (replacing what runs there) and waits until it serves that spec. */
    async deploySlot(a: { slot: Slot; version: string; model: string; image: BuiltImage; warm?: boolean }): Promise<{ url: string; id: string }> {
      return deployToSlot(cfg, runtime, a, heartbeat);
    },

    /** Removes the slot's containers or processes, every replica; nothing to do when they are gone already. */
    async removeSlot(a: { slot: Slot }): Promise<boolean> {
      return (await removeReplicas(runtime, a.slot)).length > 0;
    },

    /** Routes the release's share to nightly, or (percent 0) everything back to main. */
    async setRouting(a: { releaseId: string | null; nightlyVersion: string | null; percent: number; by: string }): Promise<void> {
      const patch = a.percent > 0
        ? { nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: a.nightlyVersion, nightlyPercent: a.percent, releaseId: a.releaseId }
        : { nightlyPercent: 0, nightlyUrl: null, nightlyVersion: null, releaseId: null };
      try {
        await gateway.put(patch, a.by);
      } catch (err) {
        // fetch says only "fetch failed"; the operator watching a retried cleanup needs the cause.
        const cause = (err as { cause?: { message?: string } }).cause?.message;
        throw cause ? new Error(`gateway admin API: ${(err as Error).message}: ${cause}`) : err;
      }
    },

    /**
     * Promotion without downtime: all traffic to nightly, main replaced by the new version and checked,
     * all traffic back to main, nightly removed, the image tagged latest. Main keeps as many replicas
     * as it had (each replaced in place, so none of the old version is left running unrouted), and
     * they are named in the routing state with the new version. Each step is safe to repeat: a retry
     * counts the same replicas (those running, or named by the gateway after a first attempt routed
     * them) and finds them already on the new version. Other machines' replicas are each
     * machine's own to replace: those already on the new version stay named, the others are unnamed, so none serves the new version's users the old
     * model. The result says which, for the workflow's history (a retry after the routing changed
     * finds the version already set and unnames nothing more: the first attempt's log names them).
     */
    async promoteSlot(a: { version: string; model: string; image: BuiltImage; releaseId: string; by: string }): Promise<{ mainReplicas: string[]; unnamed: UnnamedReplica[] }> {
      const before = await gateway.get(a.by);
      const replicas = Math.max(1, namedReplicaCount(before, cfg, 'main'), await runningReplicas(runtime, 'main'));
      const nightly = await runtime.describe('nightly');
      if (nightly?.running) {
        await gateway.put({ nightlyUrl: slotUrl(cfg, 'nightly'), nightlyVersion: a.version, nightlyPercent: 100, releaseId: a.releaseId }, a.by);
      }
      // One replica after the other: nightly carries every user meanwhile, and N warm-ups at once
      // would only slow each other on a small machine.
      for (let k = 0; k < replicas; k++) {
        heartbeat({ step: 'replacing main', replica: k, of: replicas });
        await runtime.deploy({ slot: 'main', version: a.version, model: a.model, image: a.image.runtime === 'docker' ? a.image.image : null, replica: k });
        await waitHealthy(cfg, 'main', a.image.specHash, { progress: heartbeat, replica: k });
      }
      // Read again: another machine may have named or unnamed its replicas while these were replaced.
      const remote = await remoteReplicasUnder(await gateway.get(a.by), cfg, 'main', a.version);
      for (const r of remote.unnamed) log.warn(`promotion: ${unnamedReplicaText('main', r, a.version)}`);
      const mainReplicas = [...localReplicaUrls(cfg, 'main', replicas), ...remote.keep];
      await gateway.put({ mainUrl: slotUrl(cfg, 'main'), mainVersion: a.version, mainReplicas, nightlyPercent: 0, nightlyUrl: null, nightlyVersion: null, releaseId: null }, a.by);
      await removeReplicas(runtime, 'main', replicas);
      await removeReplicas(runtime, 'nightly');
      if (a.image.runtime === 'docker') {
        await dockerClient().getImage(a.image.image).tag({ repo: 'marquee-inference', tag: 'latest' });
      }
      return { mainReplicas, unnamed: remote.unnamed };
    },
  };
}
