import { createActivities, createActivityDeps, type ActivityDeps } from '../../activities/index.ts';
import type { Config } from '../../lib/config.ts';
import { processRuntime } from '../../lib/runtime/process.ts';

/**
 * The real activities on real servers, as the worker makes them, for tests that call activities
 * directly (MockActivityEnvironment). Slots run as local processes unless the test passes a
 * runtime; `close` ends the pool and the Temporal client.
 */
export async function realActivities(cfg: Config, overrides: Partial<ActivityDeps> = {}) {
  const deps = await createActivityDeps(cfg, { runtime: processRuntime(cfg), ...overrides });
  return { activities: createActivities(deps), deps, close: async () => { await deps.temporal.connection.close(); await deps.pool.end(); } };
}
