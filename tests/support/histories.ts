/**
 * Workflow histories committed under tests/histories and replayed in CI, so that a workflow change
 * that would break running executions fails the tests. The tests never write what they check:
 * a missing file fails, and recording is a deliberate command (`npm run histories:record`), to be
 * run only when a history is new or an incompatible change is versioned (patched()/a new type).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const historiesDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'histories');

/** Every history the replay tests require; deleting one of them must fail CI. */
export const COMMITTED_HISTORIES = [
  'ping',
  'backup', 'restore',
  'canary-promote', 'canary-abort-signal', 'canary-guardrails', 'canary-inconclusive', 'canary-build-failure',
  // Recorded when the mail was given up after 10 attempts; no test makes this run any more (mail is
  // retried until it succeeds), and it stays to prove that such runs still replay.
  'canary-mail-down',
  'canary-cleanup-retries', 'canary-abort-promoting', 'reconcile-terminated',
  // Progressive steps 5 → 20 → 50, promoted.
  'canary-steps',
] as const;
export type HistoryName = (typeof COMMITTED_HISTORIES)[number];

export const recordingHistories = (): boolean => process.env.MARQUEE_RECORD_HISTORIES === '1';

/** Writes a fresh history over the committed one, only under `npm run histories:record`. */
export function recordHistory(name: HistoryName, json: string): void {
  if (!recordingHistories()) return;
  mkdirSync(historiesDir, { recursive: true });
  writeFileSync(path.join(historiesDir, `${name}.json`), json.endsWith('\n') ? json : json + '\n');
}

/** The committed history; a missing file is an error that says how to record it. */
export function committedHistory(name: HistoryName): any {
  const file = path.join(historiesDir, `${name}.json`);
  if (!existsSync(file)) {
    throw new Error(`${path.relative(process.cwd(), file)} is missing: replay tests never write what they check; record it deliberately with \`npm run histories:record\` and commit it`);
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}
