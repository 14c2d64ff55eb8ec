import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BASE_IMAGE, LABELS, buildImage, dockerClient, dockerDisabled, engineAvailable, tarFiles } from '../lib/docker.ts';
import { docker as dockerComponent } from '../stack/components/docker.ts';
import { freePort } from '../testkit/net.ts';

async function fetchWithRetry(url: string, timeoutMs: number): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fetch(url, { signal: AbortSignal.timeout(2000) });
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`nothing answered on ${url} within ${timeoutMs} ms: ${(last as Error)?.message}`);
}

const SERVER_JS = `
const http = require('node:http');
const port = Number(process.env.PORT);
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ path: req.url, greeting: process.env.GREETING, node: process.version }));
}).listen(port, '127.0.0.1', () => console.log('listening on ' + port));
`;

// One mode or the other, so neither shows up as a skipped test.
if (dockerDisabled()) describe('docker engine with MARQUEE_DOCKER=off', () => {
  it('is reported unavailable, with the reason', async () => {
    const available = await engineAvailable();
    expect(available.ok).toBe(false);
    expect(available.reason).toMatch(/MARQUEE_DOCKER=off/);
    const status = await dockerComponent().status();
    expect(status.healthy).toBe(false);
    expect(status.detail).toMatch(/unavailable: .*MARQUEE_DOCKER=off/);
  });
});

else describe('docker engine', () => {
  const docker = dockerClient();
  const tag = `marquee-test-hello:${process.pid}`;
  const created: string[] = [];

  let available: { ok: boolean; reason: string };
  beforeAll(async () => { available = await engineAvailable(); });
  // Each test fails (never skips) where the engine cannot run, saying why; MARQUEE_DOCKER=off opts out explicitly.
  beforeEach(() => {
    if (!available.ok) throw new Error(`${available.reason} (set MARQUEE_DOCKER=off where Docker cannot run)`);
  });

  afterAll(async () => {
    for (const id of created) await docker.getContainer(id).remove({ force: true }).catch(() => undefined);
    await docker.getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it('reports healthy with the base image present', async () => {
    const status = await dockerComponent().status();
    expect(status.healthy, status.detail).toBe(true);
    const base = await docker.getImage(BASE_IMAGE).inspect();
    expect(base.Config.Labels?.['marquee.node-version']).toMatch(/^v20\./);
  });

  it('builds an image FROM the local base and serves from it on the host network', async () => {
    const context = await tarFiles({
      Dockerfile: [
        `FROM ${BASE_IMAGE}`,
        'WORKDIR /app',
        'COPY server.js .',
        // A RUN step proves the image has a working shell and node at build time too.
        'RUN node -e "require(\'node:fs\').writeFileSync(\'/app/built-by\', process.version)" && test -s /app/built-by',
        'ENV GREETING=hello-from-docker',
        'CMD ["node", "server.js"]',
        '',
      ].join('\n'),
      'server.js': SERVER_JS,
    });
    const id = await buildImage(context, tag, docker);
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect((await docker.getImage(tag).inspect()).Id).toBe(id);

    const port = await freePort();
    const container = await docker.createContainer({
      Image: tag,
      Env: [`PORT=${port}`],
      Labels: { ...LABELS },
      HostConfig: { NetworkMode: 'host' },
    });
    created.push(container.id);
    await container.start();
    const res = await fetchWithRetry(`http://127.0.0.1:${port}/ping?x=1`, 20_000);
    expect(res.status).toBe(200);
    const body = await res.json() as { path: string; greeting: string; node: string };
    expect(body).toEqual({ path: '/ping?x=1', greeting: 'hello-from-docker', node: expect.stringMatching(/^v20\./) });

    const listed = await docker.listContainers({ filters: { label: ['marquee=1'], id: [container.id] } });
    expect(listed.map((c) => c.Id)).toEqual([container.id]);

    await container.remove({ force: true });
    created.pop();
    await docker.getImage(tag).remove({ force: true });
    await expect(docker.getImage(tag).inspect()).rejects.toThrow();
    await expect(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
  }, 120_000);

  it('rejects with the build error when a RUN step fails', async () => {
    const context = await tarFiles({ Dockerfile: `FROM ${BASE_IMAGE}\nRUN echo about-to-fail && exit 7\n` });
    const built = buildImage(context, `${tag}-broken`, docker);
    await expect(built).rejects.toThrow(/returned a non-zero code: 7/);
    await expect(built).rejects.toThrow(/about-to-fail/);
  }, 60_000);

  it('rejects with the build error when the Dockerfile is malformed', async () => {
    const context = await tarFiles({ Dockerfile: `FROM ${BASE_IMAGE}\nNOTANINSTRUCTION foo\n` });
    await expect(buildImage(context, `${tag}-broken`, docker)).rejects.toThrow(/unknown instruction: NOTANINSTRUCTION/i);
  }, 60_000);
});
