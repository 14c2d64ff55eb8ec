/** Marquee services as child processes of a test or benchmark, with their output kept for error messages. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../lib/config.ts';

export type Proc = ChildProcess & { output: string[]; name: string };

/** Runs a TypeScript entry with tsx; GATEWAY_TEST_NODE_ARGS adds node flags (e.g. --cpu-prof) to the gateway only. */
export function spawnTs(name: string, entry: string, env: Record<string, string>): Proc {
  const extra = name === 'gateway' && process.env.GATEWAY_TEST_NODE_ARGS ? process.env.GATEWAY_TEST_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...extra, '--import', 'tsx', path.resolve(projectRoot, entry)], {
    cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  }) as Proc;
  child.name = name;
  child.output = [];
  const keep = (c: Buffer) => { child.output.push(c.toString()); if (child.output.length > 2000) child.output.splice(0, 1000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  if (process.env.GATEWAY_TEST_VERBOSE) {
    child.stdout!.on('data', (c: Buffer) => process.stderr.write(`[${name}] ${c}`));
    child.stderr!.on('data', (c: Buffer) => process.stderr.write(`[${name}] ${c}`));
  }
  return child;
}

export const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

export async function stop(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
  if (!p || !alive(p)) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill(signal);
  const timer = setTimeout(() => { if (alive(p)) p.kill('SIGKILL'); }, timeoutMs);
  await exited;
  clearTimeout(timer);
}
