import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot, stateDir, type Config } from '../config.ts';
import { gitCommit } from '../version.ts';
import { slotEnv, slotFingerprint, slotPort, slotUrl, type Slot, type SlotDeployment, type SlotRuntime, type SlotState } from './slots.ts';

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type SlotFile = SlotDeployment & { pid: number; port?: number; fingerprint?: string };

/**
 * Inference slots as detached local processes, tracked by a state file per slot and port under
 * .marquee/run (so a test world on other ports never replaces the local stack's slots). A file
 * from before the port was in its name still counts when it names the same port.
 */
export function processRuntime(cfg: Config): SlotRuntime {
  const runDir = path.join(stateDir(), 'run');
  const stateFile = (slot: Slot, replica = 0) => path.join(runDir, `inference-${slot}-${slotPort(cfg, slot, replica)}.json`);
  const parse = (file: string): SlotFile | undefined => {
    if (!existsSync(file)) return undefined;
    try { return JSON.parse(readFileSync(file, 'utf8')); } catch { return undefined; }
  };
  const found = (slot: Slot, replica = 0): { file: string; state: SlotFile } | undefined => {
    const state = parse(stateFile(slot, replica));
    if (state) return { file: stateFile(slot, replica), state };
    if (replica > 0) return undefined;
    const legacyFile = path.join(runDir, `inference-${slot}.json`);
    const legacy = parse(legacyFile);
    return legacy && legacy.port === slotPort(cfg, slot) ? { file: legacyFile, state: legacy } : undefined;
  };
  const read = (slot: Slot, replica = 0): SlotFile | undefined => found(slot, replica)?.state;

  const runtime: SlotRuntime = {
    kind: 'process',
    async describe(slot, replica = 0) {
      const s = read(slot, replica);
      if (!s) return undefined;
      return { slot, replica, version: s.version, model: s.model, image: s.image, running: alive(s.pid), url: slotUrl(cfg, slot, replica), id: String(s.pid), port: s.port, fingerprint: s.fingerprint };
    },
    async deploy(d): Promise<SlotState> {
      const replica = d.replica ?? 0;
      const current = await runtime.describe(d.slot, replica);
      const fingerprint = slotFingerprint(cfg, d);
      // Reuse only the very same thing: same version, spec, port and database.
      if (current?.running && current.version === d.version && current.fingerprint === fingerprint) return current;
      await runtime.remove(d.slot, replica);
      mkdirSync(runDir, { recursive: true });
      mkdirSync(path.join(stateDir(), 'logs'), { recursive: true });
      const fd = openSync(path.join(stateDir(), 'logs', `inference-${d.slot}-${slotPort(cfg, d.slot, replica)}.log`), 'a');
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'services/inference/main.ts')], {
        cwd: projectRoot,
        env: { ...process.env, ...slotEnv(cfg, d), INFERENCE_MODEL: d.model, MARQUEE_GIT_COMMIT: gitCommit() },
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      child.unref();
      writeFileSync(stateFile(d.slot, replica), JSON.stringify({ ...d, pid: child.pid, port: slotPort(cfg, d.slot, replica), fingerprint }));
      return { ...d, running: true, url: slotUrl(cfg, d.slot, replica), id: String(child.pid), fingerprint };
    },
    async remove(slot, replica = 0) {
      const f = found(slot, replica);
      if (!f) return false;
      const s = f.state;
      if (alive(s.pid)) {
        try { process.kill(-s.pid, 'SIGTERM'); } catch { try { process.kill(s.pid, 'SIGTERM'); } catch { /* gone */ } }
        for (let i = 0; i < 100 && alive(s.pid); i++) await sleep(100);
        if (alive(s.pid)) { try { process.kill(-s.pid, 'SIGKILL'); } catch { /* gone */ } }
      }
      rmSync(f.file, { force: true });
      return true;
    },
  };
  return runtime;
}
