/**
 * The pieces of backup and restore without a Temporal server: the pure rules (retention, manifest
 * checks, names, cadence) and the activities run in a MockActivityEnvironment on real Postgres
 * (heartbeats, idempotent dump, the atomic and repeatable switch, the guarded drop).
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DumpResult } from '../activities/backup.ts';
import type { RestorePlan } from '../activities/restore.ts';
import { realActivities } from './support/activities.ts';
import { loadConfig } from '../lib/config.ts';
import { createPool, type Pool } from '../lib/db.ts';
import { sha256File } from '../lib/backup/checksum.ts';
import { MANIFEST_FORMAT, manifestPath, manifestProblems, parseManifest, rowCountProblems, type BackupManifest } from '../lib/backup/manifest.ts';
import { backupFileName, previousName, quoteIdent, restoreComment, restoreTargetName } from '../lib/backup/names.ts';
import { expiredBackups } from '../lib/backup/retention.ts';
import { scheduleInterval } from '../lib/backup/schedule.ts';
import { scratchDatabase } from './support/db.ts';

const cfg = loadConfig();
const real = await realActivities(cfg);
const { dropRestoreTarget, dumpDatabase, switchDatabase } = real.activities;
afterAll(() => real.close());
const H = 3_600_000;
// Expected refusals are logged by the SDK at WARN; only errors belong in the test output.
const quiet = { logger: new DefaultLogger('ERROR') };

describe('retention', () => {
  const now = Date.UTC(2025, 0, 10);
  const backups = Array.from({ length: 8 }, (_, i) => ({ id: i + 1, file: `b${i + 1}`, createdAtMs: now - (8 - i) * 24 * H }));

  it('keeps the newest keepLast and everything younger than the age, deletes the rest', () => {
    // Ages 8d..1d. Keep last 3 (ids 6-8) and younger than 4d (ages 1-3 → ids 6-8, and 4d is not younger).
    expect(expiredBackups(backups, now, 3, 4 * 24 * H).map((b) => b.id)).toEqual([5, 4, 3, 2, 1]);
    // Younger than 6d keeps ids 4-8 even though keepLast is 1.
    expect(expiredBackups(backups, now, 1, 6 * 24 * H).map((b) => b.id).sort()).toEqual([1, 2, 3]);
    // keepLast covers all: nothing goes.
    expect(expiredBackups(backups, now, 8, 0)).toEqual([]);
    expect(() => expiredBackups(backups, now, 0, 0)).toThrow(/keepLast/);
  });
});

describe('manifest checks', () => {
  const m: BackupManifest = {
    format: MANIFEST_FORMAT, file: 'x.dump', database: 'marquee', createdAt: '2025-01-06T00:00:00.000Z', sizeBytes: 100, sha256: 'a'.repeat(64),
    rowCounts: { watches: 3 }, ingestOffsets: [{ topic: 't', partition: 0, nextOffset: 5 }], release: { mainVersion: 'v1', releaseId: null },
    schemaVersion: 6, pgDumpVersion: 'pg_dump 15', durationMs: 10, workflow: null,
  };

  it('parses its own format and names every problem of a bad one', () => {
    expect(parseManifest(JSON.stringify(m))).toEqual(m);
    expect(() => parseManifest('{not json')).toThrow(/not JSON/);
    expect(() => parseManifest(JSON.stringify({ ...m, format: 'other/1', sha256: 'zz' }))).toThrow(/format.*sha256|sha256.*format/s);
  });

  it('tells a truncated file, a checksum mismatch and a foreign manifest apart', () => {
    expect(manifestProblems(m, { name: 'x.dump', sizeBytes: 100, sha256: 'a'.repeat(64) })).toEqual([]);
    expect(manifestProblems(m, { name: 'x.dump', sizeBytes: 60, sha256: 'b'.repeat(64) })).toEqual(['the file is truncated: 60 of 100 bytes']);
    expect(manifestProblems(m, { name: 'x.dump', sizeBytes: 100, sha256: 'b'.repeat(64) })[0]).toMatch(/^checksum mismatch/);
    expect(manifestProblems(m, { name: 'y.dump', sizeBytes: 100, sha256: 'a'.repeat(64) })[0]).toMatch(/foreign manifest/);
    expect(manifestProblems(m, { name: 'x.dump', sizeBytes: 100, sha256: 'a'.repeat(64) }, { file: 'x.dump', sizeBytes: 100, sha256: 'c'.repeat(64) })[0]).toMatch(/disagree on the checksum/);
    expect(rowCountProblems({ a: 1, b: 2 }, { a: 1, b: 3, c: 0 })).toEqual(['b: 3 rows, manifest has 2', 'c: not in the manifest']);
  });
});

describe('names and cadence', () => {
  it('makes short, safe, deterministic database and file names', () => {
    const long = 'x'.repeat(200);
    expect(restoreTargetName(long)).toBe(restoreTargetName(long));
    expect(restoreTargetName(long)).not.toBe(restoreTargetName(long + 'y'));
    expect(restoreTargetName(long).length).toBeLessThanOrEqual(63);
    const prev = previousName('m'.repeat(63), Date.UTC(2025, 0, 6, 1, 2, 3));
    expect(prev.length).toBeLessThanOrEqual(63);
    expect(prev).toMatch(/_prev_20250106t010203z$/);
    expect(backupFileName('marquee', Date.UTC(2025, 0, 6), 'abc-def-123')).toBe('marquee-20250106T000000Z-abcdef12.dump');
    expect(() => quoteIdent('a"; drop database marquee; --')).toThrow(/not a database name/);
  });

  it('reads the configured cadence', () => {
    expect(scheduleInterval('every 6h')).toBe('6h');
    expect(scheduleInterval(cfg.backup.schedule)).toMatch(/^\d+[mhd]$/);
    expect(() => scheduleInterval('hourly')).toThrow(/every 6h/);
  });
});

describe('activities on real Postgres', () => {
  let live: Awaited<ReturnType<typeof scratchDatabase>>;
  let admin: Pool;
  let dir: string;
  const extra: string[] = [];

  beforeAll(async () => {
    live = await scratchDatabase('bkact');
    live.pool.on('error', () => undefined);
    admin = createPool(cfg, { database: 'postgres', max: 1 });
    dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-backup-test-'));
    await live.pool.query(`INSERT INTO ingest_offsets (topic, kafka_partition, next_offset) VALUES ('t', 0, 10), ('t', 1, 20)`);
    await live.pool.query(`INSERT INTO served_recommendations (served_at, user_id, slot, movie_ids, latency_ms)
      SELECT now(), g, 'main', ARRAY['a+' || g, 'b+' || g], 1 FROM generate_series(1, 30000) g`);
  });
  afterAll(async () => {
    await live?.drop();
    for (const name of extra) await admin.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await admin?.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('dumpDatabase heartbeats its progress, writes file and manifest, and a retry returns the same file', async () => {
    const info = { workflowExecution: { workflowId: 'wf-dump', runId: 'run-0001-aaaa' }, scheduledTimestampMs: Date.UTC(2025, 0, 6) };
    const env = new MockActivityEnvironment(info, quiet);
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const r = await env.run(dumpDatabase, { database: live.name, dir }) as DumpResult;
    expect(path.basename(r.path)).toBe(`${live.name}-20250106T000000Z-run0001a.dump`);
    expect(beats.length).toBeGreaterThan(0);
    expect(beats[0]).toMatchObject({ phase: 'dump' });
    const m = parseManifest(readFileSync(manifestPath(r.path), 'utf8'));
    expect(m).toEqual(r.manifest);
    expect(await sha256File(r.path)).toEqual({ sha256: m.sha256, sizeBytes: m.sizeBytes });
    expect(m.rowCounts.served_recommendations).toBe(30000);
    expect(m.ingestOffsets).toEqual([{ topic: 't', partition: 0, nextOffset: 10 }, { topic: 't', partition: 1, nextOffset: 20 }]);
    expect(existsSync(`${r.path}.partial`)).toBe(false);
    // A retry of the same activity (same run, same first scheduling) finds the finished file and keeps it.
    const again = await new MockActivityEnvironment(info, quiet).run(dumpDatabase, { database: live.name, dir });
    expect(again).toEqual(r);
  });

  it('switchDatabase renames atomically under a connected client, and a repeat knows it is done', async () => {
    const restoreId = `switch-test-${live.name}`;
    const target = restoreTargetName(restoreId);
    extra.push(target);
    await admin.query(`CREATE DATABASE ${quoteIdent(target)}`);
    const t = createPool(cfg, { database: target, max: 1 });
    await t.query(`CREATE TABLE marker (v text); INSERT INTO marker VALUES ('restored')`);
    await t.end();
    await admin.query(`COMMENT ON DATABASE ${quoteIdent(target)} IS '${restoreComment(restoreId, 'r1')}'`);
    const previous = previousName(live.name, Date.now());
    extra.push(previous);
    // A "service" holding a connection to the live database: it must be moved, not block the switch.
    const service = createPool(cfg, { database: live.name, max: 1 });
    service.on('error', () => undefined);
    await service.query('SELECT 1');
    const plan = { restoreId, runId: 'r1', live: live.name, target, previous, backupId: null, file: '', manifest: {} } as unknown as RestorePlan;
    const env = new MockActivityEnvironment(undefined, quiet);
    const first = await env.run(switchDatabase, plan);
    expect(first).toMatchObject({ previous, alreadyDone: false });
    const second = await env.run(switchDatabase, plan);
    expect(second).toMatchObject({ alreadyDone: true });
    // The service reconnects by name and lands on the restored data; the old data is kept.
    expect((await service.query('SELECT v FROM marker')).rows).toEqual([{ v: 'restored' }]);
    await service.end();
    const old = createPool(cfg, { database: previous, max: 1 });
    expect((await old.query('SELECT count(*)::int AS n FROM served_recommendations')).rows[0].n).toBe(30000);
    await old.end();
    // A different run with the same workflow id cannot pass for the finished one.
    await expect(env.run(switchDatabase, { ...plan, runId: 'r2' })).rejects.toThrow(/nothing was switched/);
  });

  it('dropRestoreTarget refuses anything but the restore\'s own database', async () => {
    const env = new MockActivityEnvironment(undefined, quiet);
    await expect(env.run(dropRestoreTarget, { restoreId: 'x', target: live.name, live: live.name })).rejects.toThrow(/refusing to drop/);
    await expect(env.run(dropRestoreTarget, { restoreId: 'x', target: restoreTargetName('y'), live: live.name })).rejects.toThrow(/refusing to drop/);
    expect(await env.run(dropRestoreTarget, { restoreId: 'x', target: restoreTargetName('x'), live: live.name })).toEqual({ dropped: false });
  });
});
