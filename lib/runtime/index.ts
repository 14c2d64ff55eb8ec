import type { Config } from '../config.ts';
import { dockerDisabled, engineAvailable } from '../docker.ts';
import { dockerRuntime } from './docker.ts';
import { processRuntime } from './process.ts';
import type { SlotRuntime } from './slots.ts';

export * from './slots.ts';

/**
 * The slot runtime `cfg.runtime` names: docker (fails when the engine does not answer), process,
 * or auto — Docker when its engine answers and MARQUEE_DOCKER is not off, local processes otherwise.
 * Callers decide once (the worker at start, a CLI command per run) and keep the answer.
 */
export async function chooseRuntime(cfg: Config): Promise<SlotRuntime> {
  const mode = cfg.runtime ?? 'auto';
  if (mode === 'process') return processRuntime(cfg);
  const engine = dockerDisabled() ? { ok: false, reason: 'Docker is disabled by MARQUEE_DOCKER=off' } : await engineAvailable();
  if (engine.ok) return dockerRuntime(cfg);
  if (mode === 'docker') throw new Error(`runtime: docker is configured, but ${engine.reason}`);
  return processRuntime(cfg);
}
