import { proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities/index.ts';

const { ping: pingActivity } = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 seconds',
});

/** The smoke test of the whole Temporal path: client → server → worker → activity and back. */
export async function ping(name: string): Promise<string> {
  return await pingActivity(name);
}
