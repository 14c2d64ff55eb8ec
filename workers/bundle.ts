/**
 * The workflow bundle, cached on disk. Bundling workflows/ (webpack) is most of a worker's start
 * (about 5 of 8 s here); a worker restarted by the supervisor after a crash should be back within
 * seconds, so the bundle is kept under .marquee/cache, keyed by a hash of everything it can contain.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { projectRoot, stateDir } from '../lib/config.ts';

/**
 * Generous on purpose: every source the workflows can import (workflows/, lib/, activities/ for
 * types), the locked dependency versions and node's version. A stale bundle would run old workflow
 * code; a needless rebuild only costs those seconds.
 */
function sourceHash(workflowsPath: string): string {
  const h = createHash('sha256');
  h.update(process.version).update(workflowsPath);
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (/\.(ts|js|json)$/.test(entry.name)) h.update(p).update(readFileSync(p));
    }
  };
  for (const dir of ['workflows', 'lib', 'activities']) walk(path.join(projectRoot, dir));
  for (const file of ['package-lock.json', 'tsconfig.json']) {
    const p = path.join(projectRoot, file);
    if (existsSync(p)) h.update(readFileSync(p));
  }
  return h.digest('hex').slice(0, 24);
}

export async function cachedWorkflowBundle(workflowsPath: string): Promise<{ code: string; cached: boolean }> {
  const dir = path.join(stateDir(), 'cache', 'workflow-bundle');
  const file = path.join(dir, `${sourceHash(workflowsPath)}.js`);
  if (existsSync(file)) return { code: readFileSync(file, 'utf8'), cached: true };
  // The runtime's logger (WARN in workers/main.ts): webpack's INFO report is noise in an operator's log.
  const bundle: WorkflowBundleWithSourceMap = await bundleWorkflowCode({ workflowsPath, logger: Runtime.instance().logger });
  mkdirSync(dir, { recursive: true });
  // Written aside and renamed: two workers starting at once never read half a bundle.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, bundle.code);
  renameSync(tmp, file);
  prune(dir, 10);
  return { code: bundle.code, cached: false };
}

/** Keeps the newest bundles (worktrees and branches share the cache), removes the rest. */
function prune(dir: string, keep: number): void {
  const files = readdirSync(dir).filter((f) => f.endsWith('.js')).map((f) => ({ f, t: statSync(path.join(dir, f)).mtimeMs })).sort((a, b) => b.t - a.t);
  for (const { f } of files.slice(keep)) rmSync(path.join(dir, f), { force: true });
}
