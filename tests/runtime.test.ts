/**
 * The slot runtime reuses a running slot only when it was started with the very same things:
 * redeploying it is a no-op, while a change of database, spec or version starts a new one.
 * (The local-process runtime; the Docker runtime compares the same fingerprint, kept in a label.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../lib/config.ts';
import { databaseUrl } from '../lib/db.ts';
import { processRuntime } from '../lib/runtime/process.ts';
import { slotFingerprint, type SlotDeployment } from '../lib/runtime/slots.ts';
import { freePort } from '../testkit/net.ts';

const home = mkdtempSync(path.join(os.tmpdir(), 'marquee-runtime-'));
process.env.MARQUEE_HOME = home;
const base = loadConfig();
const withDb = (cfg: Config, db: string): Config => ({ ...cfg, postgres: { ...cfg.postgres, url: databaseUrl(cfg, db) } });
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('slot runtime (local processes)', () => {
  let cfg: Config;
  afterAll(async () => {
    if (cfg) await processRuntime(cfg).remove('main');
    delete process.env.MARQUEE_HOME;
    rmSync(home, { recursive: true, force: true });
  });

  it('reuses a slot started with the same things, and replaces one started for another database or spec', async () => {
    const port = await freePort();
    cfg = withDb({ ...base, services: { ...base.services, inferenceMain: { ...base.services.inferenceMain, port } } }, 'marquee_runtime_a');
    const d: SlotDeployment = { slot: 'main', version: 'rt-1', model: 'models/seed-baseline.json', image: null };
    const first = await processRuntime(cfg).deploy(d);
    expect(first.running).toBe(true);
    expect(first.fingerprint).toBe(slotFingerprint(cfg, d));
    expect((await processRuntime(cfg).deploy(d)).id).toBe(first.id);

    const otherDb = withDb(cfg, 'marquee_runtime_b');
    expect(slotFingerprint(otherDb, d)).not.toBe(first.fingerprint);
    const moved = await processRuntime(otherDb).deploy(d);
    expect(moved.id).not.toBe(first.id);
    expect(alive(Number(first.id))).toBe(false);

    cfg = otherDb;
    const respec = await processRuntime(cfg).deploy({ ...d, model: 'models/taste-v1.json' });
    expect(respec.id).not.toBe(moved.id);
    expect((await processRuntime(cfg).describe('main'))?.model).toBe('models/taste-v1.json');
  }, 60_000);

  it('a deployment on other ports (a test world beside the stack) neither sees nor replaces the slot', async () => {
    const other: Config = { ...cfg, services: { ...cfg.services, inferenceMain: { port: await freePort() } } };
    const before = await processRuntime(cfg).describe('main');
    expect(before?.running).toBe(true);
    expect(await processRuntime(other).describe('main')).toBeUndefined();
    expect(await processRuntime(other).remove('main')).toBe(false);
    const d: SlotDeployment = { slot: 'main', version: 'rt-other', model: 'models/seed-baseline.json', image: null };
    const beside = await processRuntime(other).deploy(d);
    try {
      expect(beside.id).not.toBe(before!.id);
      expect(await processRuntime(cfg).describe('main')).toMatchObject({ id: before!.id, running: true });
    } finally {
      await processRuntime(other).remove('main');
    }
    expect(alive(Number(before!.id))).toBe(true);
  }, 60_000);
});
