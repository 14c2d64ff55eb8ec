/**
 * Matching this machine's replicas against the gateway's routing state (lib/runtime/replicas.ts):
 * the promotion counts them with it and `marquee undeploy` unnames them with it, so both must agree
 * on what a local replica URL is, trailing slashes included. Other machines' replicas are the
 * rest; under a new version only those that report it on /healthz stay named (stand-in replicas:
 * plain HTTP servers on loopback answering /healthz).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../lib/config.ts';
import { remoteReplicasUnder } from '../lib/runtime/deploy.ts';
import { localReplicaIndex, localReplicaUrls, namedReplicaCount, remoteReplicaUrls } from '../lib/runtime/replicas.ts';
import { MAX_REPLICAS } from '../lib/runtime/slots.ts';

const base = loadConfig();
const cfg: Config = { ...base, services: { ...base.services, inferenceMain: { port: 4001 }, inferenceNightly: { port: 4002 } } };
const state = (mainReplicas: string[], nightlyReplicas: string[] = []) => ({ mainReplicas, nightlyReplicas });

describe('local replica URLs', () => {
  it('lists replicas 1..count-1 on the slot port + 100·k, none for one replica, all but replica 0 by default', () => {
    expect(localReplicaUrls(cfg, 'main', 3)).toEqual(['http://127.0.0.1:4101', 'http://127.0.0.1:4201']);
    expect(localReplicaUrls(cfg, 'nightly', 2)).toEqual(['http://127.0.0.1:4102']);
    expect(localReplicaUrls(cfg, 'main', 1)).toEqual([]);
    expect(localReplicaUrls(cfg, 'main', 0)).toEqual([]);
    expect(localReplicaUrls(cfg, 'main')).toHaveLength(MAX_REPLICAS - 1);
    expect(localReplicaUrls(cfg, 'main').at(-1)).toBe(`http://127.0.0.1:${4001 + 100 * (MAX_REPLICAS - 1)}`);
  });

  it('knows a named URL as a local replica with or without trailing slashes, and nothing else', () => {
    expect(localReplicaIndex(cfg, 'main', 'http://127.0.0.1:4101')).toBe(1);
    expect(localReplicaIndex(cfg, 'main', 'http://127.0.0.1:4201/')).toBe(2);
    expect(localReplicaIndex(cfg, 'main', 'http://127.0.0.1:4301//')).toBe(3);
    // The slot's own URL (replica 0) is never listed as a replica; another slot's or machine's is not ours.
    expect(localReplicaIndex(cfg, 'main', 'http://127.0.0.1:4001')).toBeUndefined();
    expect(localReplicaIndex(cfg, 'main', 'http://127.0.0.1:4102')).toBeUndefined();
    expect(localReplicaIndex(cfg, 'main', 'http://10.0.0.7:4101')).toBeUndefined();
    expect(localReplicaIndex(cfg, 'main', `http://127.0.0.1:${4001 + 100 * MAX_REPLICAS}`)).toBeUndefined();
  });
});

describe('namedReplicaCount', () => {
  it('is 0 when the state names no local replica of the slot', () => {
    expect(namedReplicaCount(state([]), cfg, 'main')).toBe(0);
    expect(namedReplicaCount(state(['http://10.0.0.7:4101']), cfg, 'main')).toBe(0);
    expect(namedReplicaCount(state([], ['http://127.0.0.1:4102']), cfg, 'main')).toBe(0);
  });

  it('is the highest named local replica + 1, trailing slashes aside, gaps and foreign URLs ignored', () => {
    expect(namedReplicaCount(state(['http://127.0.0.1:4101']), cfg, 'main')).toBe(2);
    expect(namedReplicaCount(state(['http://127.0.0.1:4101/']), cfg, 'main')).toBe(2);
    expect(namedReplicaCount(state(['http://127.0.0.1:4301/', 'http://10.0.0.7:4901', 'http://127.0.0.1:4101']), cfg, 'main')).toBe(4);
    expect(namedReplicaCount(state(['http://127.0.0.1:4101'], ['http://127.0.0.1:4202/']), cfg, 'nightly')).toBe(3);
  });

  it('agrees with localReplicaUrls: naming the URLs for n replicas counts n', () => {
    for (let n = 2; n <= MAX_REPLICAS; n++) {
      expect(namedReplicaCount(state(localReplicaUrls(cfg, 'main', n)), cfg, 'main')).toBe(n);
      expect(namedReplicaCount(state([], localReplicaUrls(cfg, 'nightly', n).map((u) => `${u}/`)), cfg, 'nightly')).toBe(n);
    }
  });
});

describe('other machines\' replicas', () => {
  it('are the named URLs that are neither the slot\'s own nor its replicas here', () => {
    expect(remoteReplicaUrls(state(['http://127.0.0.1:4101', 'http://10.0.0.7:4001', 'http://127.0.0.1:4001/', 'http://10.0.0.8:4101/']), cfg, 'main'))
      .toEqual(['http://10.0.0.7:4001', 'http://10.0.0.8:4101/']);
    expect(remoteReplicaUrls(state(['http://10.0.0.7:4001'], ['http://127.0.0.1:4102', 'http://10.0.0.9:4002']), cfg, 'nightly')).toEqual(['http://10.0.0.9:4002']);
    expect(remoteReplicaUrls(state([]), cfg, 'main')).toEqual([]);
  });

  const servers: Server[] = [];
  afterAll(() => { for (const s of servers) s.close(); });
  /** A stand-in replica on another "machine": answers /healthz with the version given, or the status. */
  const replica = async (answer: { version?: string; status?: number }): Promise<string> => {
    const server = createServer((_req, res) => {
      res.writeHead(answer.status ?? 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ model: { version: answer.version } }));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  it('under a new version, stay named only when they run it; the others are unnamed with the reason', async () => {
    const onNew = await replica({ version: 'v2' });
    const onOld = await replica({ version: 'v1' });
    const failing = await replica({ version: 'v2', status: 503 });
    const dead = await replica({ version: 'v2' });
    servers.at(-1)!.close();
    const routing = { mainVersion: 'v1', nightlyVersion: null, nightlyReplicas: [], mainReplicas: ['http://127.0.0.1:4101', onNew, `${onOld}/`, failing, dead] };
    const r = await remoteReplicasUnder(routing, cfg, 'main', 'v2');
    expect(r.keep).toEqual([onNew]);
    expect(r.unnamed.map((u) => u.url)).toEqual([`${onOld}/`, failing, dead]);
    expect(r.unnamed[0].reason).toBe('runs v1, not v2');
    expect(r.unnamed[1].reason).toBe('/healthz answered 503');
    expect(r.unnamed[2].reason).toMatch(/^\/healthz does not answer/);
    // The same version: every one stays (one down now is the gateway's health checks' to skip).
    expect(await remoteReplicasUnder({ ...routing, mainVersion: 'v2' }, cfg, 'main', 'v2')).toEqual({ keep: [onNew, `${onOld}/`, failing, dead], unnamed: [] });
  });
});
