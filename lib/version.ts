import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from './config.ts';

let commit: string | undefined;

/** The git commit of the running code: MARQUEE_GIT_COMMIT (set in images) or the work tree's HEAD. */
export function gitCommit(): string {
  if (commit === undefined) {
    commit = process.env.MARQUEE_GIT_COMMIT ?? (() => {
      try {
        return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: projectRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      } catch {
        return 'unknown';
      }
    })();
  }
  return commit;
}

export const packageVersion: string = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')).version;
