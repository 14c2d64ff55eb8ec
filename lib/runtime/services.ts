/**
 * Marquee's services as Docker containers (`marquee start --containers`): one locally built image
 * (`marquee-services:<hash>`, FROM the same base image as the inference slots) holding the gateway,
 * ingest and catalog bundles; one container per service on the host network, restart policy
 * `unless-stopped` (Docker starts a crashed service again), labelled `marquee.service=<name>`.
 *
 * The worker is not among them: its activities run pg_dump/pg_restore, git and esbuild on the
 * checkout (to build inference images), none of which a node-only image holds.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { loadConfigFile, projectRoot } from '../config.ts';
import { buildImage, dockerClient, LABELS, tarFiles } from '../docker.ts';
import { gitCommit } from '../version.ts';
import { bundleEntry } from './image.ts';

export const CONTAINER_SERVICES = ['gateway', 'ingest', 'catalog'] as const;
export type ContainerService = (typeof CONTAINER_SERVICES)[number];
const ENTRIES: Record<ContainerService, string> = {
  gateway: 'services/gateway/main.ts',
  ingest: 'services/ingest/main.ts',
  catalog: 'services/catalog/main.ts',
};
/** The label every service container carries (besides marquee=1): its service's name. */
export const SERVICE_LABEL = 'marquee.service';

/** The config file the services read (baked into the image). */
const defaultConfigFile = (): string => process.env.MARQUEE_CONFIG ?? path.join(projectRoot, 'temporal.yaml');

export const isContainerService = (name: string): name is ContainerService => (CONTAINER_SERVICES as readonly string[]).includes(name);

/** The build context: Dockerfile, package.json, the config in use, and each service's bundle. The tag is a hash of it all. */
export async function servicesBuildContext(configFile = defaultConfigFile()): Promise<{ context: Buffer; tag: string }> {
  const file = (p: string) => readFileSync(path.join(projectRoot, p));
  const files: Record<string, Buffer> = {
    Dockerfile: file('docker/services/Dockerfile'),
    'package.json': file('package.json'),
    'temporal.yaml': readFileSync(configFile),
  };
  for (const s of CONTAINER_SERVICES) files[`dist/${s}.mjs`] = await bundleEntry(ENTRIES[s]);
  const h = createHash('sha256');
  for (const name of Object.keys(files).sort()) h.update(name).update(files[name]);
  return { context: await tarFiles(files), tag: `marquee-services:${h.digest('hex').slice(0, 12)}` };
}

/** The image for the current code and config: built once, found by its tag afterwards. */
export async function ensureServicesImage(docker: Docker = dockerClient(), log: (line: string) => void = () => {}): Promise<string> {
  const t = Date.now();
  const { context, tag } = await servicesBuildContext();
  const exists = await docker.getImage(tag).inspect().then(() => true, () => false);
  if (exists) return tag;
  log(`building ${tag} (gateway, ingest, catalog)`);
  await buildImage(context, tag, docker, { buildargs: { GIT_COMMIT: gitCommit() }, labels: { 'marquee.component': 'services' } });
  log(`built ${tag} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  return tag;
}

/**
 * The environment a service container gets: the caller's MARQUEE_* overrides and service settings
 * (ports, database, topic), and its health URL, from the config as the container will read it
 * (the baked file with those overrides).
 */
export function containerEnv(service: ContainerService, env: NodeJS.ProcessEnv = process.env, configFile = defaultConfigFile()): string[] {
  const keep = Object.fromEntries(Object.entries(env).filter(([k, v]) => v !== undefined && /^(MARQUEE_|GATEWAY_|INGEST_|CATALOG_)/.test(k)
    // The config file is baked in; the state dir and the Docker switch mean nothing inside.
    && !['MARQUEE_CONFIG', 'MARQUEE_HOME', 'MARQUEE_DOCKER', 'MARQUEE_GIT_COMMIT'].includes(k))) as Record<string, string>;
  const cfg = loadConfigFile(configFile, keep);
  const port = { gateway: keep.GATEWAY_PORT ?? cfg.services.gateway.port, ingest: keep.INGEST_PORT ?? cfg.services.ingest.port, catalog: keep.CATALOG_PORT ?? cfg.services.catalog.port }[service];
  return [...Object.entries(keep).map(([k, v]) => `${k}=${v}`), `HEALTH_URL=http://127.0.0.1:${port}/healthz`];
}

export interface ServiceContainer {
  name: string;
  service: string;
  id: string;
  image: string;
  state: string;
  /** Docker's health check: starting, healthy, unhealthy (or none). */
  health: string;
  restarts: number;
  /** The host pid of the container's main process (0 when it is not running). */
  pid: number;
  startedAt: string;
}

export async function describeServiceContainer(docker: Docker, name: string): Promise<ServiceContainer | undefined> {
  let c: Docker.ContainerInspectInfo;
  try {
    c = await docker.getContainer(name).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
  return {
    name: c.Name.replace(/^\//, ''), service: c.Config.Labels?.[SERVICE_LABEL] ?? '?', id: c.Id, image: c.Config.Image,
    state: c.State.Status, health: (c.State as { Health?: { Status: string } }).Health?.Status ?? 'none',
    restarts: c.RestartCount, pid: c.State.Pid, startedAt: c.State.StartedAt,
  };
}

/** Every service container of the project on this engine (any prefix), for status listings. */
export async function listServiceContainers(docker: Docker = dockerClient()): Promise<ServiceContainer[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [SERVICE_LABEL] } });
  const out: ServiceContainer[] = [];
  for (const c of list) {
    const d = await describeServiceContainer(docker, c.Id);
    if (d) out.push(d);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export interface StartOptions {
  docker?: Docker;
  env?: NodeJS.ProcessEnv;
  /** Container names are <prefix>-<service> ("marquee" by default; tests use their own). */
  prefix?: string;
  image?: string;
  log?: (line: string) => void;
}

export const containerName = (service: string, prefix = 'marquee') => `${prefix}-${service}`;

/** Replaces any container of the same name: a fresh one from the current image, started. */
export async function startServiceContainers(services: ContainerService[], o: StartOptions = {}): Promise<ServiceContainer[]> {
  const docker = o.docker ?? dockerClient();
  const image = o.image ?? await ensureServicesImage(docker, o.log);
  const started: ServiceContainer[] = [];
  for (const service of services) {
    const name = containerName(service, o.prefix);
    await removeContainer(docker, name);
    const container = await docker.createContainer({
      name,
      Image: image,
      Cmd: ['node', `/app/dist/${service}.mjs`],
      Env: containerEnv(service, o.env),
      Labels: { ...LABELS, 'marquee.component': 'service', [SERVICE_LABEL]: service },
      // Graceful stop: the services finish what they hold on SIGTERM (docker stop waits StopTimeout).
      StopTimeout: 20,
      HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'unless-stopped' } },
    });
    await container.start();
    o.log?.(`${service}: container ${name} started from ${image}`);
    started.push((await describeServiceContainer(docker, name))!);
  }
  return started;
}

async function removeContainer(docker: Docker, name: string): Promise<boolean> {
  const c = await describeServiceContainer(docker, name);
  if (!c) return false;
  const container = docker.getContainer(c.id);
  if (c.state === 'running' || c.state === 'restarting') await container.stop({ t: 20 }).catch(() => undefined);
  await container.remove({ force: true }).catch((err) => {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  });
  return true;
}

/** Stops (SIGTERM, then SIGKILL after 20 s) and removes the named services' containers. */
export async function stopServiceContainers(services: readonly string[], o: { docker?: Docker; prefix?: string } = {}): Promise<void> {
  const docker = o.docker ?? dockerClient();
  await Promise.all(services.map((s) => removeContainer(docker, containerName(s, o.prefix))));
}
