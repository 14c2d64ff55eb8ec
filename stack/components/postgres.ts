import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Config } from '../../lib/config.ts';
import { createPool, migrate } from '../../lib/db.ts';
import type { Component } from '../component.ts';
import { aptInstall, isAlive, log, portOpen, readPid, run, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

function binDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(`${root}/${v}/bin/postgres`)).sort((a, b) => Number(b) - Number(a));
  return versions.length ? `${root}/${versions[0]}/bin` : undefined;
}

function postgresUser(): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** A Postgres cluster of the project's own under .marquee/postgres, run as the postgres user (initdb refuses root). */
export function postgres(cfg: Config): Component {
  const url = new URL(cfg.postgres.url);
  const port = Number(url.port || 5432);
  const role = decodeURIComponent(url.username || 'marquee');
  const database = url.pathname.replace(/^\//, '') || 'marquee';
  const root = statePath('postgres');
  const data = `${root}/data`;
  const sockets = `${root}/run`;

  const asPostgres = (cmd: string, args: string[]) => {
    const { uid, gid } = postgresUser();
    return run(cmd, args, { uid, gid, cwd: '/' });
  };

  return {
    name: 'postgres',
    async install() {
      if (!binDir()) aptInstall('postgres', ['postgresql']);
      const bin = binDir();
      if (!bin) throw new Error('the postgresql package installed no server binary under /usr/lib/postgresql');
      const { uid, gid } = postgresUser();
      mkdirSync(sockets, { recursive: true });
      chownSync(root, uid, gid);
      chownSync(sockets, uid, gid);
      if (!existsSync(`${data}/PG_VERSION`)) {
        log('postgres', `initdb ${data}`);
        mkdirSync(data, { recursive: true });
        chownSync(data, uid, gid);
        asPostgres(`${bin}/initdb`, ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C.UTF-8']);
        // Only loopback connections are accepted at all (listen_addresses), and those are trusted.
        writeFileSync(`${data}/pg_hba.conf`, [
          'local all all trust',
          'host  all all 127.0.0.1/32 trust',
          'host  all all ::1/128 trust',
          '',
        ].join('\n'));
        chownSync(`${data}/pg_hba.conf`, uid, gid);
      }
    },
    async start() {
      const bin = binDir()!;
      const running = readPid('postgres');
      if (!(running && isAlive(running)) || !(await portOpen(port))) {
        if (await portOpen(port)) throw new Error(`port ${port} is taken by a process this stack did not start`);
        const { uid, gid } = postgresUser();
        startDaemon('postgres', `${bin}/postgres`, [
          '-D', data,
          '-c', `listen_addresses=${url.hostname}`,
          '-c', `port=${port}`,
          '-c', `unix_socket_directories=${sockets}`,
          '-c', 'max_connections=300',
          '-c', 'shared_buffers=512MB',
          '-c', 'max_wal_size=4GB',
          '-c', 'log_min_messages=warning',
        ], { uid, gid, cwd: '/' });
        await waitFor('postgres', () => portOpen(port), 60_000);
      }
      await waitFor('postgres', async () => {
        try { asPostgres(`${bin}/pg_isready`, ['-h', sockets, '-p', String(port)]); return true; } catch { return false; }
      }, 60_000);
      const psql = (sql: string) => asPostgres(`${bin}/psql`, ['-h', sockets, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-tAc', sql]).trim();
      if (psql(`SELECT 1 FROM pg_roles WHERE rolname = '${role}'`) !== '1') {
        // Superuser so that restores can create and swap databases.
        psql(`CREATE ROLE "${role}" LOGIN SUPERUSER`);
      }
      if (psql(`SELECT 1 FROM pg_database WHERE datname = '${database}'`) !== '1') {
        psql(`CREATE DATABASE "${database}" OWNER "${role}"`);
      }
      const pool = createPool(cfg, { max: 1 });
      try {
        const applied = await migrate(pool);
        if (applied.length) log('postgres', `migrations applied: ${applied.join(', ')}`);
      } finally {
        await pool.end();
      }
    },
    async stop() {
      const bin = binDir();
      const pid = readPid('postgres');
      if (bin && pid && isAlive(pid)) {
        try { asPostgres(`${bin}/pg_ctl`, ['stop', '-D', data, '-m', 'fast', '-w']); } catch { /* fall through to the pid file */ }
      }
      await stopDaemon('postgres');
    },
    async status() {
      const address = `${url.hostname}:${port}`;
      if (!binDir()) return { address, healthy: false, detail: 'not installed (apt package postgresql)' };
      const pool = createPool(cfg, { max: 1 });
      try {
        const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations');
        return { address, healthy: true, detail: `database ${database}, ${rows[0].n} migrations applied` };
      } catch (err) {
        return { address, healthy: false, detail: (err as Error).message };
      } finally {
        await pool.end();
      }
    },
  };
}
