/**
 * Matching this machine's replicas against the gateway's routing state (lib/runtime/replicas.ts):
 * the promotion counts them with it and `marquee undeploy` unnames them with it, so both must agree
 * on what a local replica URL is, trailing slashes included.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../lib/config.ts';
import { localReplicaIndex, localReplicaUrls, namedReplicaCount } from '../lib/runtime/replicas.ts';
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
