import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';

const { ping: pingActivity } = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
});

/** The smoke test of the whole Temporal path: client → server → worker → activity and back. */
export async function ping(name: string): Promise<string> {
  return await pingActivity(name);
}
