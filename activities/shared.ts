import { loadConfig } from '../lib/config.ts';
import { createPool, type Pool } from '../lib/db.ts';

let pool: Pool | undefined;

/** One pool per worker process for all activities. */
export function activityPool(): Pool {
  pool ??= createPool(loadConfig(), { max: 5, applicationName: 'marquee-worker' });
  return pool;
}
