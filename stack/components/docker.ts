import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, createReadStream } from 'node:fs';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Config } from '../../lib/config.ts';
import { BASE_IMAGE, LABELS, dockerClient, dockerDisabled, dockerPaths, dockerSocket, engineAvailable, pingSocket, readProgress } from '../../lib/docker.ts';
import { makeRootfs } from '../../docker/base/make-rootfs.ts';
import type { Component } from '../component.ts';
import { aptInstall, commandExists, isAlive, log, logTail, readPid, run, sleep, startDaemon, statePath, stopDaemon, waitFor } from '../proc.ts';

const NAME = 'docker';
const DAEMON = 'dockerd';
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'];

/** A DOCKER_HOST unix socket means someone else's engine: we use it but never start or stop it. */
const external = (): boolean => process.env.DOCKER_HOST?.startsWith('unix://') === true;

function dockerdArgs(driver: string): string[] {
  const p = dockerPaths();
  return [
    '--data-root', p.dataRoot,
    '--exec-root', p.execRoot,
    '--pidfile', p.pidFile,
    '--host', `unix://${p.socket}`,
    // Our own (empty) config file, so a system /etc/docker/daemon.json cannot clash with these flags.
    '--config-file', statePath('docker', 'daemon.json'),
    `--storage-driver=${driver}`,
    // No iptables rules, no bridge, no sysctl changes: containers use the host network.
    '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false', '--bridge=none',
    // Should dockerd find a system containerd, keep our containers out of the system engine's namespace.
    '--containerd-namespace', 'marquee', '--containerd-plugins-namespace', 'marquee-plugins',
    '--log-level=warn',
  ];
}

/** Debian puts dockerd and runc in /usr/sbin, which a non-login PATH may lack; dockerd finds containerd and runc on PATH. */
function daemonPath(): string {
  const parts = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (!parts.includes(dir)) parts.push(dir);
  return parts.join(':');
}

const hasDockerd = (): boolean => commandExists('dockerd') || existsSync('/usr/sbin/dockerd');

/** overlay2 when the kernel has it and dockerd accepts it on this filesystem; vfs (a full copy per layer) otherwise. */
function driverCandidates(): string[] {
  const chosen = statePath('docker', 'driver');
  if (existsSync(chosen)) return [readFileSync(chosen, 'utf8').trim()];
  const overlay = existsSync('/proc/filesystems') && /\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'));
  return overlay ? ['overlay2', 'vfs'] : ['vfs'];
}

async function startEngine(): Promise<string> {
  const p = dockerPaths();
  mkdirSync(p.dataRoot, { recursive: true });
  mkdirSync(p.execRoot, { recursive: true });
  writeFileSync(statePath('docker', 'daemon.json'), '{}\n');
  writeFileSync(statePath('docker', 'socket-path'), `${p.socket}\n`);
  const failures: string[] = [];
  for (const driver of driverCandidates()) {
    // A socket left by a killed dockerd would make the new one fail to listen.
    rmSync(p.socket, { force: true });
    log(NAME, `starting dockerd (storage ${driver}) on ${p.socket}`);
    startDaemon(DAEMON, 'dockerd', dockerdArgs(driver), { env: { ...process.env, PATH: daemonPath() } });
    try {
      await waitFor(DAEMON, () => pingSocket(p.socket, 1000), 60_000);
      writeFileSync(statePath('docker', 'driver'), `${driver}\n`);
      return driver;
    } catch {
      // dockerd's last log line is its fatal error (it logs at warn level and above).
      failures.push(`with storage ${driver}: ${logTail(DAEMON, 1).trim()}`);
      await stopEngine();
    }
  }
  throw new Error(`dockerd would not start ${failures.join('; ')} (log: ${statePath('logs', `${DAEMON}.log`)})`);
}

/** Stops our dockerd (from the stack's pid file), then the containerd it started, should that outlive it. */
async function stopEngine(): Promise<void> {
  const containerdPidFile = path.join(dockerPaths().execRoot, 'containerd', 'containerd.pid');
  const containerdPid = existsSync(containerdPidFile) ? Number(readFileSync(containerdPidFile, 'utf8').trim()) : NaN;
  // dockerd stops its containers first (up to 10 s each by default), so give it time.
  await stopDaemon(DAEMON, 40_000);
  if (Number.isInteger(containerdPid) && containerdPid > 0 && isAlive(containerdPid) && isOurContainerd(containerdPid)) {
    process.kill(containerdPid, 'SIGTERM');
    for (let i = 0; i < 50 && isAlive(containerdPid); i++) await sleep(200);
    if (isAlive(containerdPid)) process.kill(containerdPid, 'SIGKILL');
  }
  unmountLeftovers();
}

/** dockerd leaves its netns/default bind mount (and a killed one, container mounts) behind; they block `rm -rf .marquee`. */
function unmountLeftovers(): void {
  const p = dockerPaths();
  const roots = [p.execRoot, p.dataRoot].map((r) => `${r}/`);
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => roots.some((r) => m.startsWith(r)))
    .reverse();
  for (const m of mounts) {
    try { run('umount', [m]); } catch (err) { log(NAME, `could not unmount ${m}: ${(err as Error).message}`); }
  }
}

/** True when the pid is a containerd whose command line names our exec root (pids get reused). */
function isOurContainerd(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return path.basename(cmdline[0] ?? '') === 'containerd' && cmdline.some((a) => a.includes(dockerPaths().execRoot));
  } catch {
    return false;
  }
}

async function baseImageInfo(docker: Docker): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker.getImage(BASE_IMAGE).inspect();
  } catch {
    return undefined;
  }
}

/** Runs a command in a throwaway container on the host network and returns its output (stdout and stderr). */
async function runOnce(docker: Docker, image: string, cmd: string[]): Promise<{ code: number; output: string }> {
  const container = await docker.createContainer({ Image: image, Cmd: cmd, Labels: { ...LABELS }, HostConfig: { NetworkMode: 'host' } });
  try {
    await container.start();
    const { StatusCode } = await container.wait();
    const logs = await container.logs({ stdout: true, stderr: true, follow: false });
    // Without a TTY the log stream is multiplexed: 8-byte frame headers before each chunk.
    let output = '';
    for (let i = 0; i + 8 <= logs.length;) {
      const size = logs.readUInt32BE(i + 4);
      output += logs.subarray(i + 8, i + 8 + size).toString('utf8');
      i += 8 + size;
    }
    return { code: StatusCode, output };
  } finally {
    await container.remove({ force: true });
  }
}

/** Makes marquee-node:20 with `docker import` unless it exists for the host's current node. */
async function ensureBaseImage(docker: Docker): Promise<void> {
  const hostNode = process.version;
  const existing = await baseImageInfo(docker);
  if (existing?.Config?.Labels?.['marquee.node-version'] === hostNode) return;
  const t = Date.now();
  const work = statePath('docker', 'base-build');
  const { tar, nodeVersion } = makeRootfs(work, process.execPath);
  log(NAME, `importing ${BASE_IMAGE} (host node ${nodeVersion})`);
  const [repo, tag] = BASE_IMAGE.split(':');
  try {
    const stream = await docker.importImage(createReadStream(tar) as unknown as string, {
      repo,
      tag,
      changes: [
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        `ENV NODE_VERSION=${nodeVersion.slice(1)}`,
        `LABEL marquee.node-version=${nodeVersion}`,
        'CMD ["node"]',
      ],
    } as Record<string, unknown>);
    await readProgress(docker, stream);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { code, output } = await runOnce(docker, BASE_IMAGE, ['node', '-e', 'console.log(1)']);
  if (code !== 0 || output.trim() !== '1') {
    await docker.getImage(BASE_IMAGE).remove({ force: true }).catch(() => undefined);
    throw new Error(`${BASE_IMAGE} was imported but node does not run in it (exit ${code}): ${output.trim()}`);
  }
  if (existing && existing.Id !== (await baseImageInfo(docker))?.Id) {
    // The image made for an older host node; it stays if a container still uses it.
    await docker.getImage(existing.Id).remove().catch(() => undefined);
  }
  log(NAME, `${BASE_IMAGE} ready in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}

function recordReason(reason: string | undefined): void {
  const { reasonFile } = dockerPaths();
  if (reason === undefined) rmSync(reasonFile, { force: true });
  else {
    mkdirSync(path.dirname(reasonFile), { recursive: true });
    writeFileSync(reasonFile, `${reason}\n`);
  }
}

/**
 * The Docker engine: Debian's docker.io run as our own dockerd under .marquee/docker (never the
 * system one), plus the local base image. Optional: where it cannot start, status says why and the
 * rest of the stack works without it.
 */
export function docker(_cfg?: Config): Component {
  return {
    name: NAME,
    optional: true,
    async install() {
      if (dockerDisabled()) return;
      try {
        const missing: string[] = [];
        if (!external() && !hasDockerd()) missing.push('docker.io');
        if (!BUSYBOX.some((p) => existsSync(p))) missing.push('busybox-static');
        if (missing.length > 0) aptInstall(NAME, missing);
        if (!external() && !hasDockerd()) throw new Error('the docker.io package installed no dockerd');
      } catch (err) {
        recordReason(`install failed: ${(err as Error).message.replace(/\s*\n\s*/g, ' | ')}`);
        throw err;
      }
    },
    async start() {
      if (dockerDisabled()) throw new Error('disabled by MARQUEE_DOCKER=off');
      const socket = dockerSocket();
      try {
        if (!(await pingSocket(socket))) {
          if (external()) throw new Error(`DOCKER_HOST names ${socket}, but no engine answers there`);
          const pid = readPid(DAEMON);
          if (pid !== undefined && isAlive(pid)) {
            // Ours, but not answering (still starting, or wedged): give it a moment, then restart it.
            const ok = await waitFor(DAEMON, () => pingSocket(socket, 1000), 15_000).then(() => true, () => false);
            if (!ok) await stopEngine();
          }
          if (!(await pingSocket(socket))) await startEngine();
        }
        await ensureBaseImage(dockerClient());
        recordReason(undefined);
      } catch (err) {
        recordReason((err as Error).message.replace(/\s*\n\s*/g, ' | '));
        throw err;
      }
    },
    async stop() {
      if (external()) return;
      await stopEngine();
    },
    async status() {
      const socket = dockerSocket();
      const address = `unix://${socket}`;
      if (dockerDisabled()) return { address, healthy: false, detail: `engine unavailable: ${(await engineAvailable()).reason}` };
      if (!(await pingSocket(socket))) {
        const { reason } = await engineAvailable();
        const tail = !external() && readPid(DAEMON) !== undefined ? ` (log: ${logTail(DAEMON, 1)})` : '';
        return { address, healthy: false, detail: `engine unavailable: ${reason}${tail}` };
      }
      const client = dockerClient();
      const version = await client.version().then((v) => v.Version, () => '?');
      const info = await client.info().then((i: { Driver?: string }) => i.Driver ?? '?', () => '?');
      const base = (await baseImageInfo(client)) ? `${BASE_IMAGE} present` : `${BASE_IMAGE} MISSING`;
      return { address, healthy: true, detail: `dockerd ${version}, storage ${info}, ${base}` };
    },
  };
}
