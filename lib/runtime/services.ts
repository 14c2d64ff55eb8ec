/**
 * Marquee's services as Docker containers (`marquee start --containers`): one locally built image
 * (`marquee-services:<hash>`, FROM the same base image as the inference slots) holding the gateway,
 * ingest and catalog bundles; one container per service on the host network, restart policy
 * `unless-stopped` (Docker starts a crashed service again), labelled `marquee.service=<name>`.
 *
 * The worker has an image of its own (`marquee-worker:<hash>`): the base image plus the PostgreSQL
 * client tools its backup activities run. Its code is not baked in: it builds inference images
 * from the checkout (esbuild, models/, docker/inference), so it runs the checkout, mounted
 * read-only, with the state directory (.marquee: caches, backups, the Docker socket) read-write.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import { sharedLibraries } from '../../docker/base/make-rootfs.ts';
import { loadConfigFile, projectRoot, stateDir } from '../config.ts';
import { buildImage, dockerClient, dockerSocket, LABELS, tarFiles } from '../docker.ts';
import { INGEST_NODE_FLAGS } from '../ingest/runtime.ts';
import { gitCommit } from '../version.ts';
import { bundleEntry } from './image.ts';

export const CONTAINER_SERVICES = ['worker', 'gateway', 'ingest', 'catalog'] as const;
export type ContainerService = (typeof CONTAINER_SERVICES)[number];
type BundledService = Exclude<ContainerService, 'worker'>;
const BUNDLED: BundledService[] = ['gateway', 'ingest', 'catalog'];
const ENTRIES: Record<BundledService, string> = {
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
  for (const s of BUNDLED) files[`dist/${s}.mjs`] = await bundleEntry(ENTRIES[s]);
  // The ingest's consumer threads start from their own bundle beside it (services/ingest/threads.ts).
  files['dist/ingest-thread.mjs'] = await bundleEntry('services/ingest/thread.ts');
  const h = createHash('sha256');
  for (const name of Object.keys(files).sort()) h.update(name).update(files[name]);
  return { context: await tarFiles(files), tag: `marquee-services:${h.digest('hex').slice(0, 12)}` };
}

/** The image for the current code and config: built once, found by its tag afterwards. */
export async function ensureServicesImage(docker: Docker = dockerClient(), log: (line: string) => void = () => {}): Promise<string> {
  return ensureImage(docker, await servicesBuildContext(), 'services', log);
}

/** Where the host keeps the newest PostgreSQL's binaries (Debian's layout). */
function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(`${root}/${v}/bin/pg_dump`)).sort((a, b) => Number(b) - Number(a)) : [];
  if (!versions.length) throw new Error(`no pg_dump under ${root}: the worker image copies the host's PostgreSQL client tools (npm run stack -- up postgres installs them)`);
  return `${root}/${versions[0]}/bin`;
}

/** The worker image's context: its Dockerfile and rootfs/ with pg_dump, pg_restore and their libraries at the host's paths. */
export function workerBuildContext(): Promise<{ context: Buffer; tag: string }> {
  const files: Record<string, Buffer> = { Dockerfile: readFileSync(path.join(projectRoot, 'docker/services/worker.Dockerfile')) };
  const bin = postgresBin();
  // The base image has node's libraries (libc, the loader...); a copy from here would land as 0644 over them.
  const inBase = new Set(sharedLibraries(process.execPath));
  const addLibs = (binary: string) => {
    for (const lib of sharedLibraries(binary)) if (!inBase.has(lib)) files[`rootfs${lib}`] = readFileSync(realpathSync(lib));
  };
  for (const tool of ['pg_dump', 'pg_restore']) {
    files[`rootfs/usr/local/bin/${tool}`] = readFileSync(realpathSync(`${bin}/${tool}`));
    addLibs(`${bin}/${tool}`);
  }
  // The Temporal SDK's native core (from the mounted node_modules) needs a few libraries node does not.
  const core = path.join(projectRoot, 'node_modules/@temporalio/core-bridge/releases', `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-unknown-linux-gnu`, 'index.node');
  if (existsSync(core)) addLibs(core);
  const h = createHash('sha256');
  for (const name of Object.keys(files).sort()) h.update(name).update(files[name]);
  return tarFiles(files).then((context) => ({ context, tag: `marquee-worker:${h.digest('hex').slice(0, 12)}` }));
}

async function ensureImage(docker: Docker, made: { context: Buffer; tag: string }, what: string, log: (line: string) => void): Promise<string> {
  const { context, tag } = made;
  if (await docker.getImage(tag).inspect().then(() => true, () => false)) return tag;
  const t = Date.now();
  log(`building ${tag} (${what})`);
  await buildImage(context, tag, docker, { buildargs: { GIT_COMMIT: gitCommit() }, labels: { 'marquee.component': what } });
  log(`built ${tag} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  await pruneOlder(docker, tag);
  return tag;
}

/** Each code change makes a new tag; the older ones go unless a container still uses them (the engine refuses those). */
async function pruneOlder(docker: Docker, keep: string): Promise<void> {
  const repo = keep.split(':')[0];
  const images = await docker.listImages({ filters: { reference: [repo] } }).catch(() => []);
  for (const image of images) {
    for (const t of image.RepoTags ?? []) {
      if (t !== keep && t.startsWith(`${repo}:`)) await docker.getImage(t).remove().catch(() => undefined);
    }
  }
}

export async function ensureWorkerImage(docker: Docker = dockerClient(), log: (line: string) => void = () => {}): Promise<string> {
  return ensureImage(docker, await workerBuildContext(), 'worker', log);
}

/**
 * The worker runs the checkout: mounted at its own path read-only, with what lives outside it
 * (node_modules or .marquee when they are symlinks, as in a git worktree) and the state directory
 * read-write, so paths in the config and the Docker socket mean the same inside.
 */
function workerBinds(): string[] {
  const binds = new Map<string, boolean>([[projectRoot, false]]);
  const nodeModules = realpathSync(path.join(projectRoot, 'node_modules'));
  if (!nodeModules.startsWith(`${projectRoot}/`)) binds.set(nodeModules, false);
  const state = existsSync(stateDir()) ? realpathSync(stateDir()) : stateDir();
  binds.set(state, true);
  const socketDir = path.dirname(dockerSocket());
  if (!socketDir.startsWith(`${state}/`)) binds.set(socketDir, true);
  return [...binds].map(([p, rw]) => `${p}:${p}${rw ? '' : ':ro'}`);
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
  const port = { gateway: keep.GATEWAY_PORT ?? cfg.services.gateway.port, ingest: keep.INGEST_PORT ?? cfg.services.ingest.port, catalog: keep.CATALOG_PORT ?? cfg.services.catalog.port, worker: cfg.services.worker.port }[service];
  const extra = service === 'worker'
    // No git inside: the commit the worker records comes from here. DOCKER_HOST, when set, names the engine the slots run on.
    ? [`MARQUEE_GIT_COMMIT=${gitCommit()}`, ...(env.DOCKER_HOST ? [`DOCKER_HOST=${env.DOCKER_HOST}`] : []), ...(env.MARQUEE_CONFIG ? [`MARQUEE_CONFIG=${env.MARQUEE_CONFIG}`] : [])]
    : [];
  return [...Object.entries(keep).map(([k, v]) => `${k}=${v}`), ...extra, `HEALTH_URL=http://127.0.0.1:${port}/healthz`];
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
  const bundled = services.some((x) => x !== 'worker') ? (o.image ?? await ensureServicesImage(docker, o.log)) : undefined;
  const workerImage = services.includes('worker') ? await ensureWorkerImage(docker, o.log) : undefined;
  const started: ServiceContainer[] = [];
  for (const service of services) {
    const name = containerName(service, o.prefix);
    await removeContainer(docker, name);
    const worker = service === 'worker';
    const container = await docker.createContainer({
      name,
      Image: worker ? workerImage : bundled,
      Cmd: worker ? ['node', '--import', 'tsx', path.join(projectRoot, 'workers/main.ts')] : ['node', ...(service === 'ingest' ? INGEST_NODE_FLAGS : []), `/app/dist/${service}.mjs`],
      WorkingDir: worker ? projectRoot : '/app',
      Env: containerEnv(service, o.env),
      Labels: { ...LABELS, 'marquee.component': 'service', [SERVICE_LABEL]: service },
      // Graceful stop: the services finish what they hold on SIGTERM (docker stop waits StopTimeout).
      StopTimeout: 20,
      HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'unless-stopped' }, ...(worker ? { Binds: workerBinds() } : {}) },
    });
    await container.start();
    o.log?.(`${service}: container ${name} started from ${worker ? workerImage : bundled}`);
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
