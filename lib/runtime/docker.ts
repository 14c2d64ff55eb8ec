import type Docker from 'dockerode';
import type { Config } from '../config.ts';
import { dockerClient, LABELS } from '../docker.ts';
import { slotEnv, slotFingerprint, slotPort, slotUrl, type Slot, type SlotRuntime, type SlotState } from './slots.ts';

/**
 * One container per slot and port: two deployments on one engine (a test world beside the local
 * stack) never replace each other's slots. Containers made before the port was in the name are
 * still found when they serve the same port.
 */
const containerName = (cfg: Config, slot: Slot, replica = 0) => `marquee-inference-${slot}-${slotPort(cfg, slot, replica)}`;
const legacyName = (slot: Slot) => `marquee-inference-${slot}`;

/** Inference slots as Docker containers on the host network, labelled as Marquee's. */
export function dockerRuntime(cfg: Config, docker: Docker = dockerClient()): SlotRuntime {
  async function inspectName(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await docker.getContainer(name).inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }
  async function inspect(slot: Slot, replica = 0): Promise<Docker.ContainerInspectInfo | undefined> {
    const current = await inspectName(containerName(cfg, slot, replica));
    if (current) return current;
    if (replica > 0) return undefined;
    const legacy = await inspectName(legacyName(slot));
    return legacy?.Config.Labels?.['marquee.port'] === String(slotPort(cfg, slot)) ? legacy : undefined;
  }

  const runtime: SlotRuntime = {
    kind: 'docker',
    async describe(slot, replica = 0) {
      const c = await inspect(slot, replica);
      if (!c) return undefined;
      const labels = c.Config.Labels ?? {};
      return {
        slot, replica, version: labels['marquee.version'] ?? '?', model: labels['marquee.model'] ?? '?', image: c.Config.Image,
        running: c.State.Running, url: slotUrl(cfg, slot, replica), id: c.Id, imageId: c.Image, port: Number(labels['marquee.port'] ?? 0),
        fingerprint: labels['marquee.fingerprint'],
      };
    },
    async deploy(d): Promise<SlotState> {
      if (!d.image) throw new Error('the Docker runtime needs an image');
      const replica = d.replica ?? 0;
      const current = await runtime.describe(d.slot, replica);
      // Reuse only the very same thing: same version, image build (a tag can be rebuilt), port, database and spec.
      const imageId = (await docker.getImage(d.image).inspect()).Id;
      const fingerprint = slotFingerprint(cfg, d);
      if (current?.running && current.version === d.version && current.image === d.image
        && current.imageId === imageId && current.fingerprint === fingerprint) return current;
      await runtime.remove(d.slot, replica);
      const env = { ...slotEnv(cfg, d) };
      const container = await docker.createContainer({
        name: containerName(cfg, d.slot, replica),
        Image: d.image,
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        Labels: {
          ...LABELS, 'marquee.component': 'inference', 'marquee.slot': d.slot, 'marquee.version': d.version,
          'marquee.model': d.model, 'marquee.port': String(slotPort(cfg, d.slot, replica)), 'marquee.replica': String(replica), 'marquee.fingerprint': fingerprint,
        },
        HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'unless-stopped' } },
      });
      await container.start();
      return { ...d, running: true, url: slotUrl(cfg, d.slot, replica), id: container.id, fingerprint };
    },
    async remove(slot, replica = 0) {
      const c = await inspect(slot, replica);
      if (!c) return false;
      const container = docker.getContainer(c.Id);
      if (c.State.Running) await container.stop({ t: 10 }).catch(() => undefined);
      await container.remove({ force: true }).catch((err) => {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      });
      return true;
    },
  };
  return runtime;
}
