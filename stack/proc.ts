import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stateDir } from '../lib/config.ts';

export const home = (): string => stateDir();
export const statePath = (...parts: string[]): string => path.join(home(), ...parts);

export function log(component: string, message: string): void {
  process.stderr.write(`[stack:${component}] ${message}\n`);
}

/** Runs a command to completion; throws with its output when it fails. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}:\n${out}`);
  }
  return String(r.stdout ?? '');
}

export function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

let aptUpdated = false;
/** Installs Debian packages (we run as root on these machines). */
export function aptInstall(component: string, packages: string[]): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    log(component, 'apt-get update');
    run('apt-get', ['update', '-q'], { env, stdio: 'ignore' });
    aptUpdated = true;
  }
  log(component, `apt-get install ${packages.join(' ')}`);
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { env });
}

export function pidFile(name: string): string {
  return statePath('run', `${name}.pid`);
}

export function readPid(name: string): number | undefined {
  const file = pidFile(name);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts a long-running server detached from this process, logging to .marquee/logs/<name>.log, and records its pid. */
export function startDaemon(name: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): number {
  mkdirSync(statePath('run'), { recursive: true });
  mkdirSync(statePath('logs'), { recursive: true });
  const logFile = statePath('logs', `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ['ignore', fd, fd],
    uid: opts.uid,
    gid: opts.gid,
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  child.unref();
  writeFileSync(pidFile(name), String(child.pid));
  return child.pid;
}

/** Stops the process group recorded in the pid file (TERM, then KILL after the grace period). */
export async function stopDaemon(name: string, graceMs = 15_000): Promise<boolean> {
  const pid = readPid(name);
  if (pid === undefined) return false;
  if (isAlive(pid)) {
    try { process.kill(-pid, 'SIGTERM'); } catch { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
    const deadline = Date.now() + graceMs;
    while (isAlive(pid) && Date.now() < deadline) await sleep(200);
    if (isAlive(pid)) {
      try { process.kill(-pid, 'SIGKILL'); } catch { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
  }
  rmSync(pidFile(name), { force: true });
  return true;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Polls until check() is true; throws with the log tail of `name` when it does not come up in time. */
export async function waitFor(name: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    const pid = readPid(name);
    if (pid !== undefined && !isAlive(pid)) break;
    await sleep(300);
  }
  throw new Error(`${name} did not come up within ${Math.round(timeoutMs / 1000)} s; last log lines:\n${logTail(name)}`);
}

export function logTail(name: string, lines = 20): string {
  const file = statePath('logs', `${name}.log`);
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}
