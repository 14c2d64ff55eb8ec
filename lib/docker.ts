import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { stateDir } from './config.ts';

/** The local base image every service image builds FROM (made by `docker import`, no registry needed). */
export const BASE_IMAGE = 'marquee-node:20';
/** Every container the project starts carries this label, so cleanup can find them all. */
export const LABELS = { marquee: '1' } as const;

/** True when the project is told not to use Docker at all (MARQUEE_DOCKER=off). */
export function dockerDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MARQUEE_DOCKER === 'off';
}

/** The unix socket named by DOCKER_HOST, when it names one; other schemes are not ours to use. */
function envSocket(env: NodeJS.ProcessEnv): string | undefined {
  const host = env.DOCKER_HOST;
  if (!host?.startsWith('unix://')) return undefined;
  return host.slice('unix://'.length);
}

export interface DockerPaths {
  /** Images and containers (persistent, under .marquee/docker). */
  dataRoot: string;
  /** Sockets and runtime state; moved to /run when the state dir is too deep for a unix socket path. */
  execRoot: string;
  socket: string;
  pidFile: string;
  /** Why the last start failed; read by engineAvailable() so tests can say why. */
  reasonFile: string;
}

/**
 * Where our own dockerd keeps things. A unix socket path is limited to 107 bytes, and dockerd puts
 * containerd's socket at <exec-root>/containerd/containerd.sock, so a deep checkout (CI clones into
 * other folders) moves the runtime part to a short, per-checkout path under /run.
 */
export function dockerPaths(): DockerPaths {
  const base = path.join(stateDir(), 'docker');
  const longest = path.join(base, 'exec', 'containerd', 'containerd.sock');
  const runDir = longest.length <= 100
    ? base
    : `/run/marquee-docker-${createHash('sha256').update(base).digest('hex').slice(0, 10)}`;
  return {
    dataRoot: path.join(base, 'data'),
    execRoot: path.join(runDir, 'exec'),
    socket: path.join(runDir, 'docker.sock'),
    pidFile: path.join(base, 'dockerd.pid'),
    reasonFile: path.join(base, 'unavailable'),
  };
}

/** The engine's socket: DOCKER_HOST when it is a unix socket, otherwise the one our stack's dockerd listens on. */
export function dockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  return envSocket(env) ?? dockerPaths().socket;
}

export function dockerClient(): Docker {
  return new Docker({ socketPath: dockerSocket() });
}

/** GET /_ping on the socket; resolves false rather than throwing, within timeoutMs. */
export function pingSocket(socketPath: string, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'OK'));
    });
    req.on('timeout', () => { req.destroy(); resolve(false); });
    req.on('error', () => resolve(false));
  });
}

/** Whether a Docker engine answers, and if not, why (the stack records why its start failed). */
export async function engineAvailable(): Promise<{ ok: boolean; reason: string }> {
  if (dockerDisabled()) return { ok: false, reason: 'Docker is disabled by MARQUEE_DOCKER=off' };
  const socket = dockerSocket();
  if (await pingSocket(socket)) return { ok: true, reason: `engine answers on ${socket}` };
  const { reasonFile } = dockerPaths();
  const recorded = !envSocket(process.env) && existsSync(reasonFile) ? readFileSync(reasonFile, 'utf8').trim() : '';
  const why = recorded !== ''
    ? `the last start failed: ${recorded}`
    : existsSync(socket) ? 'the socket exists but the engine does not answer /_ping' : 'no socket there; start it with `npm run stack -- up docker`';
  return { ok: false, reason: `no Docker engine on ${socket}: ${why}` };
}

interface ProgressEntry {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

/**
 * Follows a build or import progress stream with dockerode's modem.followProgress. Docker reports
 * failures inside the stream with HTTP 200, so the first `error`/`errorDetail` entry turns into a
 * rejection here; followProgress alone would resolve.
 */
export function readProgress(docker: Docker, stream: NodeJS.ReadableStream, onEntry: (e: ProgressEntry) => void = () => {}): Promise<ProgressEntry[]> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, entries: ProgressEntry[]) => {
      if (err) return reject(err);
      const failed = entries.find((e) => e.error || e.errorDetail);
      if (failed) reject(new Error((failed.errorDetail?.message ?? failed.error ?? 'unknown error').trim()));
      else resolve(entries);
    }, onEntry);
  });
}

/**
 * Builds an image from a tar build context and resolves with its id. Rejects with the build's own
 * error message (a failing RUN, a bad instruction), including the last output lines for context.
 */
export async function buildImage(
  context: Buffer | NodeJS.ReadableStream, tag: string, docker: Docker = dockerClient(),
  opts: { buildargs?: Record<string, string>; labels?: Record<string, string>; onOutput?: (line: string) => void } = {},
): Promise<string> {
  // RUN steps use the host network: the engine runs with --bridge=none, so there is no default bridge.
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(context as NodeJS.ReadableStream, { t: tag, networkmode: 'host', rm: true, forcerm: true, labels: { ...LABELS, ...opts.labels }, buildargs: opts.buildargs });
  } catch (err) {
    // Errors found before the build starts (a Dockerfile that does not parse) come back as an HTTP error.
    throw new Error(`building ${tag} failed: ${(err as Error).message}`);
  }
  const output: string[] = [];
  let entries: ProgressEntry[];
  try {
    entries = await readProgress(docker, stream, (e) => { if (e.stream) { output.push(e.stream); opts.onOutput?.(e.stream); } });
  } catch (err) {
    const tail = output.join('').trimEnd().split('\n').slice(-10).join('\n');
    throw new Error(`building ${tag} failed: ${(err as Error).message}${tail ? `\n${tail}` : ''}`);
  }
  const aux = entries.find((e) => e.aux?.ID)?.aux?.ID;
  if (aux) return aux;
  // Older engines only print "Successfully built <id>"; fall back to asking for the tag.
  const info = await docker.getImage(tag).inspect();
  return info.Id;
}

/**
 * Packs files into an uncompressed tar, for a build context made in memory. tar-stream writes
 * PAX headers for names past ustar's 100 bytes, so deep paths are fine too.
 */
export async function tarFiles(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  const mtime = new Date();
  for (const [name, content] of Object.entries(files)) {
    pack.entry({ name, mode: 0o644, mtime }, Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8'));
  }
  pack.finalize();
  return done;
}
