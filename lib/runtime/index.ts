import type { Config } from '../config.ts';
import { dockerDisabled, engineAvailable } from '../docker.ts';
import { dockerRuntime } from './docker.ts';
import { processRuntime } from './process.ts';
import type { SlotRuntime } from './slots.ts';

export * from './slots.ts';

/** Docker when its engine answers (and MARQUEE_DOCKER is not off), local processes otherwise. */
export async function chooseRuntime(cfg: Config): Promise<SlotRuntime> {
  if (!dockerDisabled() && (await engineAvailable()).ok) return dockerRuntime(cfg);
  return processRuntime(cfg);
}
