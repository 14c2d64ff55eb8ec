import path from 'node:path';
import { projectRoot } from '../lib/config.ts';
import { Supervisor, type ChildSpec, type SuperviseOptions } from '../lib/supervise.ts';
import { engineAvailable } from '../lib/docker.ts';
import { INGEST_NODE_FLAGS } from '../lib/ingest/runtime.ts';
import { isContainerService, startServiceContainers, stopServiceContainers, type ContainerService } from '../lib/runtime/services.ts';
import { parseOptions, UsageError, withUsage } from './args.ts';
import { ensureMain } from './deploy.ts';

/** The long-running processes of the main job. Every service a later change builds joins this list. */
export const services: { name: string; entry: string; args?: string[]; nodeArgs?: readonly string[]; env?: Record<string, string> }[] = [
  { name: 'worker', entry: 'workers/main.ts' },
  { name: 'ingest', entry: 'services/ingest/main.ts', nodeArgs: INGEST_NODE_FLAGS },
  { name: 'catalog', entry: 'services/catalog/main.ts' },
  { name: 'gateway', entry: 'services/gateway/main.ts' },
  { name: 'dashboard', entry: 'services/dashboard/main.ts' },
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
    args: [...(s.nodeArgs ?? []), '--import', 'tsx', path.join(projectRoot, s.entry), ...(s.args ?? [])],
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

export const startUsage = 'start [--containers] [service ...]';

/**
 * Runs the chosen services as supervised child processes with prefixed logs: a service that dies
 * is restarted with backoff while the others keep running; SIGINT/SIGTERM stop them all gracefully.
 * With --containers, worker, gateway, ingest and catalog run as Docker containers instead (Docker
 * restarts them); the simulator (the platform, not ours to run in production) stays a process.
 */
export async function runServices(args: string[]): Promise<number> {
  return withUsage(startUsage, async () => {
    const { values, positionals: names } = parseOptions(args, { containers: { type: 'boolean' } });
    const unknown = names.filter((n) => !services.some((s) => s.name === n));
    if (unknown.length) throw new UsageError(`unknown service(s): ${unknown.join(', ')}; known: ${services.map((s) => s.name).join(', ')}`);
    const chosen = names.length ? names : services.map((s) => s.name);
    let inContainers: ContainerService[] = [];
    if (values.containers) {
      const engine = await engineAvailable();
      if (!engine.ok) throw new Error(`--containers needs the Docker engine, which is not available (${engine.reason}); start it with \`npx marquee stack up docker\`, or leave out --containers to run the services as processes`);
      inContainers = chosen.filter(isContainerService);
    }
    // (Filtered here: serviceSpecs([]) would mean every service.)
    const specs = serviceSpecs(chosen).filter((spec) => !(inContainers as string[]).includes(spec.name));
    // Inference slots are not children of this process: the release workflow replaces them while
    // everything else keeps running, so they live in the slot runtime (Docker or detached processes).
    if (names.length === 0) console.log(`marquee: ${await ensureMain()}`);
    if (inContainers.length) {
      await startServiceContainers(inContainers, { log: (line) => console.log(`marquee: ${line}`) });
      console.log(`marquee: ${inContainers.join(', ')} run as containers (restart policy unless-stopped; \`docker logs marquee-<service>\`, \`npx marquee stack status\`)`);
    }
    const supervisor = superviseServices(specs);
    supervisor.start();
    if (specs.length) console.log(`marquee: running ${specs.map((s) => s.name).join(', ')} (restarted when they crash); Ctrl-C stops them`);
    // With every chosen service in a container there is no child to keep node running until Ctrl-C.
    const keepAlive = setInterval(() => {}, 1 << 30);
    await new Promise<void>((resolve) => {
      const stop = () => {
        console.log('marquee: stopping the services (they finish what they hold)');
        clearInterval(keepAlive);
        Promise.all([supervisor.stop('SIGTERM'), stopServiceContainers(inContainers)]).then(() => resolve(), () => resolve());
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return 0;
  });
}
