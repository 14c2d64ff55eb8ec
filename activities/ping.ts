import os from 'node:os';

/** Proves an activity ran on a real worker: the hostname comes from the worker's machine. */
export async function ping(name: string): Promise<string> {
  return `pong: ${name} from ${os.hostname()}`;
}
