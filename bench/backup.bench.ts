/**
 * Backup and restore throughput through the DatabaseBackup / DatabaseRestore workflows, beside
 * plain pg_dump / pg_restore on the same data in the same run (the baseline). MB/s is of the dump
 * file, rows/s of the rows in all tables. The workflows do more than the tools (a checksum while
 * dumping, row counts in the same snapshot, a manifest and a row; before restoring a checksum pass
 * and pg_restore --list, after it a row count per table, migrations, the switch and the carry-over),
 * so the ratio shows what that safety costs.
 * Usage: npm run bench:backup [-- --rows 1000000 --repeat 2]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../lib/config.ts';
import { createPool, databaseUrl, migrate, type Pool } from '../lib/db.ts';
import { connectClient } from '../lib/temporal.ts';
import { benchArgs } from '../testkit/args.ts';
import { freePort } from '../testkit/net.ts';
import { createWorker } from '../workers/worker.ts';
import type { DatabaseBackupResult } from '../workflows/backup.ts';
import type { DatabaseRestoreResult } from '../workflows/restore.ts';

const args = benchArgs('npm run bench:backup [-- --rows 1000000 --repeat 2]', { rows: '1000000', repeat: '2' });
const ROWS = Math.min(args.number('rows', { min: 4, integer: true }), 5_000_000);
const REPEAT = Math.max(1, Math.min(args.number('repeat', { min: 1, integer: true }), 5));
const cfg = loadConfig();
Runtime.install({ logger: new DefaultLogger('WARN') });

const tag = randomBytes(3).toString('hex');
const live = `marquee_bench_backup_${tag}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'marquee-bench-backup-'));
const admin = createPool(cfg, { database: 'postgres', max: 1 });
admin.on('error', () => undefined);

/** ~ROWS rows shaped like Marquee's: watches, ratings, recommendation events and served answers. */
async function fill(pool: Pool): Promise<void> {
  const n = Math.floor(ROWS / 4);
  await pool.query(`INSERT INTO watches (user_id, movie_id, first_at, last_at, minutes, max_minute, seen)
    SELECT g, 'movie+' || (g % 5000) || '+' || (1950 + g % 70), now() - make_interval(secs => g), now(), 1 + g % 120, 1 + g % 120, B'1011' FROM generate_series(1, ${n}) g`);
  await pool.query(`INSERT INTO ratings (user_id, movie_id, rating, rated_at)
    SELECT g, 'movie+' || (g % 5000) || '+' || (1950 + g % 70), 1 + g % 5, now() FROM generate_series(1, ${n}) g`);
  await pool.query(`INSERT INTO recommendation_events (at, user_id, server, status, movie_ids, latency_ms, topic, kafka_partition, kafka_offset)
    SELECT now(), g, '127.0.0.1:8082', 200, ARRAY(SELECT 'movie+' || ((g + k) % 5000) FROM generate_series(1, 20) k), g % 300, 'movielog', g % 4, g
    FROM generate_series(1, ${n}) g`);
  await pool.query(`INSERT INTO served_recommendations (served_at, user_id, slot, model_version, movie_ids, latency_ms)
    SELECT now(), g, 'main', 'v1', ARRAY(SELECT 'movie+' || ((g * 7 + k) % 5000) FROM generate_series(1, 20) k), (g % 300)::float8 FROM generate_series(1, ${n}) g`);
  await pool.query(`INSERT INTO ingest_offsets (topic, kafka_partition, next_offset) SELECT 'movielog', p, ${n} FROM generate_series(0, 3) p`);
  await pool.query('VACUUM ANALYZE');
}

async function timed<T>(fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

interface Figure { ms: number[] }
const best = (f: Figure) => Math.min(...f.ms);

async function main(): Promise<void> {
  console.log(`bench:backup — ${ROWS} rows, best of ${REPEAT}, Postgres ${cfg.postgres.url.replace(/\/\/[^@]*@/, '//')}`);
  await admin.query(`CREATE DATABASE "${live}"`);
  const pool = createPool(cfg, { database: live, max: 2 });
  pool.on('error', () => undefined);
  await migrate(pool);
  const filled = await timed(() => fill(pool));
  const { rows: [{ total }] } = await pool.query<{ total: number }>(
    `SELECT (SELECT count(*) FROM watches) + (SELECT count(*) FROM ratings) + (SELECT count(*) FROM recommendation_events) + (SELECT count(*) FROM served_recommendations) AS total`);
  await pool.end();
  console.log(`  filled ${live} with ${total} rows in ${(filled.ms / 1000).toFixed(1)} s`);

  const taskQueue = `bench-backup-${tag}`;
  const { worker, close: closeWorker } = await createWorker(cfg, { taskQueue });
  const running = worker.run();
  const client = await connectClient(cfg);
  const noIngest = `http://127.0.0.1:${await freePort()}`;
  const f = { dump: { ms: [] as number[] }, backup: { ms: [] as number[] }, pgRestore: { ms: [] as number[] }, restore: { ms: [] as number[] } };
  let dumpBytes = 0;
  let backupBytes = 0;
  let rows = 0;
  const scratch: string[] = [];
  try {
    for (let i = 0; i < REPEAT; i++) {
      // Baseline: plain pg_dump to a file, then plain pg_restore into a new database.
      const plainFile = path.join(dir, `plain-${i}.dump`);
      f.dump.ms.push((await timed(() => execFileSync('pg_dump', ['--format=custom', `--file=${plainFile}`, `--dbname=${databaseUrl(cfg, live)}`]))).ms);
      dumpBytes = statSync(plainFile).size;
      const plainDb = `marquee_bench_plain_${tag}_${i}`;
      scratch.push(plainDb);
      await admin.query(`CREATE DATABASE "${plainDb}" TEMPLATE template0`);
      f.pgRestore.ms.push((await timed(() => execFileSync('pg_restore', ['--exit-on-error', '--no-owner', `--dbname=${databaseUrl(cfg, plainDb)}`, plainFile]))).ms);
      await admin.query(`DROP DATABASE "${plainDb}" WITH (FORCE)`);
      rmSync(plainFile);

      // The workflows on the same database.
      const b = await timed(() => client.workflow.execute('DatabaseBackup', {
        taskQueue, workflowId: `bench-backup-${tag}-${i}`, args: [{ database: live, dir, retention: false, notifyOnFailure: false }],
      }) as Promise<DatabaseBackupResult>);
      f.backup.ms.push(b.ms);
      backupBytes = b.value.manifest.sizeBytes;
      rows = Object.values(b.value.manifest.rowCounts).reduce((a, n) => a + n, 0);
      const r = await timed(() => client.workflow.execute('DatabaseRestore', {
        taskQueue, workflowId: `bench-restore-${tag}-${i}`, args: [{ backup: b.value.id, database: live, ingestUrl: noIngest, notify: false }],
      }) as Promise<DatabaseRestoreResult>);
      f.restore.ms.push(r.ms);
      if (r.value.previous) await admin.query(`DROP DATABASE IF EXISTS "${r.value.previous}" WITH (FORCE)`);
    }
  } finally {
    worker.shutdown();
    await running;
    await closeWorker();
    await client.connection.close();
    const { rows: left } = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE $1`, [`marquee_bench_%${tag}%`]);
    for (const { datname } of left) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }

  const line = (name: string, ms: number, bytes: number) =>
    `  ${name.padEnd(28)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${(bytes / 1e6 / (ms / 1000)).toFixed(1).padStart(7)} MB/s  ${Math.round(rows / (ms / 1000)).toLocaleString('en-US').padStart(11)} rows/s`;
  console.log(`\n  dump file: ${(dumpBytes / 1e6).toFixed(1)} MB (pg_dump), ${(backupBytes / 1e6).toFixed(1)} MB (workflow); ${rows.toLocaleString('en-US')} rows in all tables`);
  console.log(line('pg_dump (baseline)', best(f.dump), dumpBytes));
  console.log(line('DatabaseBackup workflow', best(f.backup), backupBytes));
  console.log(line('pg_restore (baseline)', best(f.pgRestore), dumpBytes));
  console.log(line('DatabaseRestore workflow', best(f.restore), backupBytes));
  console.log(`\n  ratio workflow / plain throughput: backup ${(best(f.dump) / best(f.backup)).toFixed(2)}, restore ${(best(f.pgRestore) / best(f.restore)).toFixed(2)}`);
}

await main();
