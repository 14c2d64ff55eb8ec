/**
 * `marquee start --containers` on the real engine (issue 13, item 2): gateway, ingest and catalog
 * as containers of one locally built image, the worker from its own (base image + pg tools, the
 * checkout mounted), host network, restart policy unless-stopped, labelled marquee.service=<name>;
 * kill -9 of a container's main process (from the host, by its pid) makes Docker start it again,
 * and the service answers /healthz again.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { connectClient } from '../lib/temporal.ts';
import { databaseUrl } from '../lib/db.ts';
import { dockerClient, dockerDisabled, engineAvailable } from '../lib/docker.ts';
import { ensureTopic } from '../lib/kafka.ts';
import { CONTAINER_SERVICES, describeServiceContainer, listServiceContainers, startServiceContainers, stopServiceContainers, containerName, type ContainerService } from '../lib/runtime/services.ts';
import { inferenceWorld } from '../testkit/inference.ts';
import { freePort, waitForHttp } from '../testkit/net.ts';
import { stop } from '../testkit/processes.ts';
import { scratchDatabase } from './support/db.ts';
import { deleteTopic } from './support/ingest.ts';

const cfg = loadConfig();
const tag = randomBytes(3).toString('hex');
const prefix = `marquee-test-${tag}`;
const topic = `containers-${tag}`;
const ports: Record<ContainerService, number> = { worker: await freePort(), gateway: await freePort(), ingest: await freePort(), catalog: await freePort() };
const taskQueue = `containers-${tag}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let worldDb: Awaited<ReturnType<typeof scratchDatabase>>;
let db: Awaited<ReturnType<typeof scratchDatabase>>;
let world: Awaited<ReturnType<typeof inferenceWorld>>;
let slot: Awaited<ReturnType<Awaited<ReturnType<typeof inferenceWorld>>['startSlot']>>;

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}

beforeAll(async () => {
  if (dockerDisabled()) throw new Error('MARQUEE_DOCKER=off: this test needs the Docker engine');
  const engine = await engineAvailable();
  if (!engine.ok) throw new Error(`the Docker engine is not available (${engine.reason}); start it with npm run stack -- up docker`);
  worldDb = await scratchDatabase('containers_world');
  world = await inferenceWorld(cfg, worldDb, { movies: 200, users: 500 });
  slot = await world.startSlot('main');
  db = await scratchDatabase('containers');
  await ensureTopic(cfg, topic, 2);
  await startServiceContainers([...CONTAINER_SERVICES], {
    prefix,
    env: {
      MARQUEE_POSTGRES_URL: databaseUrl(cfg, db.name), MARQUEE_KAFKA_TOPIC: topic, MARQUEE_KAFKA_GROUPID: `containers-${tag}`, MARQUEE_KAFKA_QUIET: '1',
      MARQUEE_SERVICES_GATEWAY_PORT: String(ports.gateway), MARQUEE_SERVICES_INGEST_PORT: String(ports.ingest), MARQUEE_SERVICES_CATALOG_PORT: String(ports.catalog),
      MARQUEE_SERVICES_WORKER_PORT: String(ports.worker), MARQUEE_TEMPORAL_TASKQUEUE: taskQueue,
      GATEWAY_MAIN_URL: slot.url, CATALOG_VECTORS: '0',
    },
  });
}, 300_000);

afterAll(async () => {
  await stopServiceContainers([...CONTAINER_SERVICES], { prefix });
  await stop(slot?.proc);
  await world?.cleanup();
  await deleteTopic(cfg, topic);
  await db?.drop();
  await worldDb?.drop();
}, 120_000);

describe('service containers', () => {
  it('run from the locally built image on the host network with a restart policy, labelled, and become healthy', async () => {
    const docker = dockerClient();
    for (const s of CONTAINER_SERVICES) {
      const info = await docker.getContainer(containerName(s, prefix)).inspect();
      expect(info.Config.Image).toMatch(s === 'worker' ? /^marquee-worker:[0-9a-f]{12}$/ : /^marquee-services:[0-9a-f]{12}$/);
      expect(info.HostConfig.NetworkMode).toBe('host');
      expect(info.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
      expect(info.Config.Labels).toMatchObject({ marquee: '1', 'marquee.service': s });
      await waitForHttp(`http://127.0.0.1:${ports[s]}/healthz`, 60_000);
      await until(`${s} healthy in Docker`, async () => ((await describeServiceContainer(docker, containerName(s, prefix)))?.health === 'healthy' ? true : undefined), 60_000);
    }
    const listed = (await listServiceContainers()).filter((c) => c.name.startsWith(prefix));
    expect(listed.map((c) => [c.service, c.state, c.health])).toEqual([['catalog', 'running', 'healthy'], ['gateway', 'running', 'healthy'], ['ingest', 'running', 'healthy'], ['worker', 'running', 'healthy']]);
  }, 180_000);

  it('the worker container runs workflows and has the PostgreSQL tools its backups need', async () => {
    const client = await connectClient(cfg);
    try {
      const pong = await client.workflow.execute('ping', { taskQueue, workflowId: `containers-ping-${tag}`, args: [`containers-${tag}`] });
      expect(pong).toMatch(new RegExp(`^pong: containers-${tag} from `));
    } finally {
      await client.connection.close();
    }
    const exec = await dockerClient().getContainer(containerName('worker', prefix)).exec({ Cmd: ['pg_dump', '--version'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    const out = await new Promise<string>((resolve) => { let t = ''; stream.on('data', (c: Buffer) => { t += c.toString('latin1'); }); stream.on('end', () => resolve(t)); });
    expect(out).toMatch(/pg_dump \(PostgreSQL\) \d+/);
    expect((await exec.inspect()).ExitCode).toBe(0);
  }, 60_000);

  it('kill -9 of the main process inside a container: Docker restarts it and it answers again', async () => {
    const docker = dockerClient();
    for (const s of CONTAINER_SERVICES) {
      const before = (await describeServiceContainer(docker, containerName(s, prefix)))!;
      expect(before.pid).toBeGreaterThan(0);
      const t0 = Date.now();
      process.kill(before.pid, 'SIGKILL');
      const after = await until(`${s} restarted by Docker`, async () => {
        const c = await describeServiceContainer(docker, containerName(s, prefix));
        return c && c.restarts === before.restarts + 1 && c.state === 'running' && c.pid !== before.pid ? c : undefined;
      }, 30_000);
      await waitForHttp(`http://127.0.0.1:${ports[s]}/healthz`, 30_000);
      console.log(`containers: ${s} killed (pid ${before.pid}), restarted by Docker as pid ${after.pid}, answering /healthz after ${Date.now() - t0} ms`);
      expect(after.id).toBe(before.id);
    }
  }, 120_000);
});
