import path from 'node:path';
import { projectRoot } from '../lib/config.ts';
import { Supervisor, type ChildSpec, type SuperviseOptions } from '../lib/supervise.ts';
import { ensureMain } from './deploy.ts';

/** The long-running processes of the main job. Every service a later change builds joins this list. */
export const services: { name: string; entry: string; args?: string[]; env?: Record<string, string> }[] = [
  { name: 'worker', entry: 'workers/main.ts' },
  { name: 'ingest', entry: 'services/ingest/main.ts' },
  { name: 'catalog', entry: 'services/catalog/main.ts' },
  { name: 'gateway', entry: 'services/gateway/main.ts' },
  // A platform with a past (written once, into an empty topic): models have histories to rank from
  // at once. SIMULATOR_HISTORY=0 in the environment starts from nothing.
  { name: 'simulator', entry: 'services/simulator/main.ts', env: { SIMULATOR_HISTORY: '300000' } },
];

/** The services as the supervisor's child specs: node with tsx on each entry, environment on top of the service's own. */
export function serviceSpecs(names: string[] = [], env: NodeJS.ProcessEnv = process.env): ChildSpec[] {
  const unknown = names.filter((n) => !services.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown service(s): ${unknown.join(', ')}; known: ${services.map((s) => s.name).join(', ')}`);
  const chosen = names.length ? services.filter((s) => names.includes(s.name)) : services;
  return chosen.map((s) => ({
    name: s.name,
    command: process.execPath,
    args: ['--import', 'tsx', path.join(projectRoot, s.entry), ...(s.args ?? [])],
    cwd: projectRoot,
    env: { ...s.env, ...env },
  }));
}

/** The supervisor `marquee start` runs (tests build theirs with this too, to run the services exactly so). */
export function superviseServices(specs: ChildSpec[], opts: SuperviseOptions = {}): Supervisor {
  return new Supervisor(specs, {
    onOutput: (name, stream, line) => (stream === 'stdout' ? process.stdout : process.stderr).write(`${name.padEnd(9)}| ${line}\n`),
    ...opts,
  });
}

/**
 * Runs the chosen services as supervised child processes with prefixed logs: a service that dies
 * is restarted with backoff while the others keep running; SIGINT/SIGTERM stop them all gracefully.
 */
export async function runServices(names: string[]): Promise<number> {
  const specs = serviceSpecs(names);
  // Inference slots are not children of this process: the release workflow replaces them while
  // everything else keeps running, so they live in the slot runtime (Docker or detached processes).
  if (names.length === 0) console.log(`marquee: ${await ensureMain()}`);
  const supervisor = superviseServices(specs);
  supervisor.start();
  console.log(`marquee: running ${specs.map((s) => s.name).join(', ')} (restarted when they crash); Ctrl-C stops them`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      console.log('marquee: stopping the services (they finish what they hold)');
      supervisor.stop('SIGTERM').then(resolve, resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
