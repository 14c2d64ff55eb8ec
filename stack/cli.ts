import { loadConfig } from '../lib/config.ts';
import type { Component } from './component.ts';
import { log } from './proc.ts';
import { components } from './components/index.ts';
import { dockerClient, dockerDisabled, dockerSocket, pingSocket } from '../lib/docker.ts';
import { listServiceContainers } from '../lib/runtime/services.ts';

const usage = 'usage: npm run stack -- up|down|status [component ...]';

function select(names: string[]): Component[] {
  const all = components(loadConfig());
  if (names.length === 0) return all;
  const unknown = names.filter((n) => !all.some((c) => c.name === n));
  if (unknown.length) throw new Error(`unknown component(s): ${unknown.join(', ')}; known: ${all.map((c) => c.name).join(', ')}`);
  return all.filter((c) => names.includes(c.name));
}

async function up(list: Component[]): Promise<boolean> {
  const t0 = Date.now();
  let ok = true;
  // Installs run one after another (apt and pip do not like company); starts run side by side.
  const installed: Component[] = [];
  for (const c of list) {
    try {
      const t = Date.now();
      await c.install();
      installed.push(c);
      log(c.name, `installed (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (err) {
      log(c.name, `install failed: ${(err as Error).message}`);
      if (!c.optional) ok = false;
    }
  }
  const results = await Promise.all(installed.map(async (c) => {
    try {
      const t = Date.now();
      await c.start();
      log(c.name, `up (${((Date.now() - t) / 1000).toFixed(1)} s)`);
      return true;
    } catch (err) {
      log(c.name, `start failed: ${(err as Error).message}`);
      return c.optional === true;
    }
  }));
  ok = ok && results.every(Boolean);
  log('all', `${ok ? 'up' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await status(list);
  return ok;
}

async function status(list: Component[]): Promise<boolean> {
  let ok = true;
  for (const c of list) {
    const s = await c.status();
    if (!s.healthy && !c.optional) ok = false;
    console.log(`${c.name.padEnd(12)} ${s.address.padEnd(28)} ${s.healthy ? 'healthy  ' : 'UNHEALTHY'} ${s.detail}`);
  }
  await serviceContainers();
  return ok;
}

/** The services `marquee start --containers` runs, with Docker's view of their health (nothing when there are none). */
async function serviceContainers(): Promise<void> {
  if (dockerDisabled() || !(await pingSocket(dockerSocket()))) return;
  const list = await listServiceContainers(dockerClient()).catch(() => []);
  for (const c of list) {
    const healthy = c.state === 'running' && c.health === 'healthy';
    console.log(`${`service ${c.service}`.padEnd(12)} ${`container ${c.name}`.padEnd(28)} ${healthy ? 'healthy  ' : 'UNHEALTHY'} ${c.state}, health ${c.health}, ${c.restarts} restarts, ${c.image}`);
  }
}

async function down(list: Component[]): Promise<void> {
  for (const c of [...list].reverse()) {
    await c.stop();
    log(c.name, 'stopped');
  }
}

async function main(): Promise<void> {
  const [cmd, ...names] = process.argv.slice(2);
  const list = select(names);
  switch (cmd) {
    case 'up': process.exitCode = (await up(list)) ? 0 : 1; break;
    case 'down': await down(list); break;
    case 'status': process.exitCode = (await status(list)) ? 0 : 1; break;
    default: console.error(usage); process.exitCode = 2;
  }
}

main().catch((err) => {
  console.error(`stack: ${(err as Error).message}`);
  process.exit(1);
});
