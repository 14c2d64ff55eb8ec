/** The `marquee` bin in a child process, as an operator runs it. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../lib/config.ts';

const exec = promisify(execFile);

/**
 * Runs `marquee <args>` from the project root and resolves with its exit code and its stdout then
 * stderr, never rejecting: tests assert on a failing command's code and message as on a passing
 * one's. `env` is laid over this process's environment as it is at the call (tests set it late);
 * a command still running after `timeoutMs` is killed and counts as exit code 1 (its output says so).
 */
export async function runMarquee(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; out: string }> {
  try {
    const r = await exec(process.execPath, [path.join(projectRoot, 'bin/marquee.js'), ...args], {
      cwd: projectRoot, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 120_000,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; signal?: string | null; stdout?: string; stderr?: string; message: string };
    // Only an exit has a numeric code; a kill (the timeout) or a spawn error is told in the output.
    if (typeof e.code === 'number') return { code: e.code, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    return { code: 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}\n[runMarquee: ${e.signal ? `killed by ${e.signal}` : e.message.split('\n')[0]}]` };
  }
}
