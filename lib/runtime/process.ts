import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot, stateDir, type Config } from '../config.ts';
import { gitCommit } from '../version.ts';
import { slotEnv, slotFingerprint, slotPort, slotUrl, type Slot, type SlotDeployment, type SlotRuntime, type SlotState } from './slots.ts';

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Inference slots as detached local processes, tracked by a state file per slot under .marquee/run. */
export function processRuntime(cfg: Config): SlotRuntime {
  const runDir = path.join(stateDir(), 'run');
  const stateFile = (slot: Slot) => path.join(runDir, `inference-${slot}.json`);
  const read = (slot: Slot): (SlotDeployment & { pid: number; port?: number; fingerprint?: string }) | undefined => {
    if (!existsSync(stateFile(slot))) return undefined;
    try { return JSON.parse(readFileSync(stateFile(slot), 'utf8')); } catch { return undefined; }
  };

  const runtime: SlotRuntime = {
    kind: 'process',
    async describe(slot) {
      const s = read(slot);
      if (!s) return undefined;
      return { slot, version: s.version, model: s.model, image: s.image, running: alive(s.pid), url: slotUrl(cfg, slot), id: String(s.pid), port: s.port, fingerprint: s.fingerprint };
    },
    async deploy(d): Promise<SlotState> {
      const current = await runtime.describe(d.slot);
      const fingerprint = slotFingerprint(cfg, d);
      // Reuse only the very same thing: same version, spec, port and database.
      if (current?.running && current.version === d.version && current.fingerprint === fingerprint) return current;
      await runtime.remove(d.slot);
      mkdirSync(runDir, { recursive: true });
      mkdirSync(path.join(stateDir(), 'logs'), { recursive: true });
      const fd = openSync(path.join(stateDir(), 'logs', `inference-${d.slot}.log`), 'a');
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'services/inference/main.ts')], {
        cwd: projectRoot,
        env: { ...process.env, ...slotEnv(cfg, d), INFERENCE_MODEL: d.model, MARQUEE_GIT_COMMIT: gitCommit() },
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child.unref();
      writeFileSync(stateFile(d.slot), JSON.stringify({ ...d, pid: child.pid, port: slotPort(cfg, d.slot), fingerprint }));
      return { ...d, running: true, url: slotUrl(cfg, d.slot), id: String(child.pid), fingerprint };
    },
    async remove(slot) {
      const s = read(slot);
      if (!s) return false;
      if (alive(s.pid)) {
        try { process.kill(-s.pid, 'SIGTERM'); } catch { try { process.kill(s.pid, 'SIGTERM'); } catch { /* gone */ } }
        for (let i = 0; i < 100 && alive(s.pid); i++) await sleep(100);
        if (alive(s.pid)) { try { process.kill(-s.pid, 'SIGKILL'); } catch { /* gone */ } }
      }
      rmSync(stateFile(slot), { force: true });
      return true;
    },
  };
  return runtime;
}
