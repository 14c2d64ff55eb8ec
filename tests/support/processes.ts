import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../lib/config.ts';

export interface Service extends ChildProcess {
  output: string[];
  stop(): Promise<void>;
}

/** A Marquee service (or the CLI) as a child process, the way `npm start` runs it. */
export function spawnService(entry: string, env: Record<string, string>, args: string[] = []): Service {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, entry), ...args], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as Service;
  child.output = [];
  const keep = (c: Buffer) => { child.output.push(c.toString()); if (child.output.length > 400) child.output.splice(0, 100); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await gone;
    clearTimeout(t);
  };
  return child;
}

export async function waitForHttp(url: string, timeoutMs: number, what = url, ok: (body: string) => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const body = await res.text();
      if (res.ok && ok(body)) return;
      last = `${res.status} ${body.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} did not answer within ${timeoutMs / 1000} s: ${last}`);
}
