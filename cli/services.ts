import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../lib/config.ts';
import { ensureMain } from './deploy.ts';

/** The long-running processes of the main job. Every service a later change builds joins this list. */
export const services: { name: string; entry: string; args?: string[]; env?: Record<string, string> }[] = [
  { name: 'worker', entry: 'workers/main.ts' },
  { name: 'ingest', entry: 'services/ingest/main.ts' },
  { name: 'catalog', entry: 'services/catalog/main.ts' },
  { name: 'gateway', entry: 'services/gateway/main.ts' },
  { name: 'dashboard', entry: 'services/dashboard/main.ts' },
  // A platform with a past (written once, into an empty topic): models have histories to rank from
  // at once. SIMULATOR_HISTORY=0 in the environment starts from nothing.
  { name: 'simulator', entry: 'services/simulator/main.ts', env: { SIMULATOR_HISTORY: '300000' } },
];

/** Runs the chosen services as child processes with prefixed logs; stops them all on SIGINT/SIGTERM or when one dies. */
export async function runServices(names: string[]): Promise<number> {
  const unknown = names.filter((n) => !services.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown service(s): ${unknown.join(', ')}; known: ${services.map((s) => s.name).join(', ')}`);
  const chosen = names.length ? services.filter((s) => names.includes(s.name)) : services;
  // Inference slots are not children of this process: the release workflow replaces them while
  // everything else keeps running, so they live in the slot runtime (Docker or detached processes).
  if (names.length === 0) console.log(`marquee: ${await ensureMain()}`);
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  let exitCode = 0;

  const stopAll = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    for (const child of children.values()) child.kill(signal);
  };

  const finished = chosen.map((s) => new Promise<void>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, s.entry), ...(s.args ?? [])], {
      cwd: projectRoot,
      env: { ...s.env, ...process.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.set(s.name, child);
    const prefix = (chunk: Buffer, out: NodeJS.WriteStream) => {
      for (const line of chunk.toString().split('\n')) if (line) out.write(`${s.name.padEnd(9)}| ${line}\n`);
    };
    child.stdout!.on('data', (c: Buffer) => prefix(c, process.stdout));
    child.stderr!.on('data', (c: Buffer) => prefix(c, process.stderr));
    child.on('exit', (code, signal) => {
      if (!stopping) {
        console.error(`${s.name.padEnd(9)}| exited (${signal ?? code}); stopping the others`);
        exitCode = 1;
        stopAll('SIGTERM');
      }
      resolve();
    });
  }));

  process.on('SIGINT', () => stopAll('SIGTERM'));
  process.on('SIGTERM', () => stopAll('SIGTERM'));
  console.log(`marquee: running ${chosen.map((s) => s.name).join(', ')}; Ctrl-C stops them`);
  await Promise.all(finished);
  return exitCode;
}
