import { z } from 'zod';

/** The manifest written beside every backup file, `<file>.manifest.json`. */
export const MANIFEST_FORMAT = 'marquee-backup/1';

export const offsetSchema = z.strictObject({ topic: z.string(), partition: z.number().int().min(0), nextOffset: z.number().int().min(0) });
export type IngestOffset = z.infer<typeof offsetSchema>;

export const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  /** Base name of the dump file the manifest describes (a manifest copied beside another file is caught). */
  file: z.string().min(1),
  database: z.string().min(1),
  /** now() inside the snapshot the dump was taken from: the data is exactly as of this instant. */
  createdAt: z.iso.datetime({ offset: true }),
  sizeBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Rows per table in the same snapshot; a restore must find exactly these. */
  rowCounts: z.record(z.string(), z.number().int().min(0)),
  /** ingest_offsets in the snapshot: where ingest resumes in Kafka after this backup is restored. */
  ingestOffsets: z.array(offsetSchema),
  /** The model version serving as main, and the release in progress, at that instant. */
  release: z.strictObject({ mainVersion: z.string().nullable(), releaseId: z.string().nullable() }),
  schemaVersion: z.number().int().min(0),
  pgDumpVersion: z.string(),
  durationMs: z.number().min(0),
  workflow: z.strictObject({ workflowId: z.string(), runId: z.string() }).nullable(),
});

export type BackupManifest = z.infer<typeof manifestSchema>;

export const manifestPath = (file: string): string => `${file}.manifest.json`;

/** Parses a manifest's text; throws an Error naming each problem (the caller turns it into a non-retryable failure). */
export function parseManifest(text: string): BackupManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`the manifest is not JSON: ${(err as Error).message}`);
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) throw new Error(`the manifest is not a ${MANIFEST_FORMAT} manifest: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return r.data;
}

export interface FileFacts { name: string; sizeBytes: number; sha256: string }

/**
 * What is wrong with a backup file given its manifest (and the backups row, when there is one);
 * empty when it is the file the manifest describes. Size is checked before the checksum so that a
 * truncated file is reported as such rather than as a plain mismatch.
 */
export function manifestProblems(m: BackupManifest, file: FileFacts, row?: { sizeBytes: number; sha256: string; file: string }): string[] {
  const problems: string[] = [];
  if (m.file !== file.name) problems.push(`the manifest describes ${m.file}, not ${file.name} (a foreign manifest)`);
  if (row && row.sha256 !== m.sha256) problems.push(`the backups row and the manifest disagree on the checksum (${row.sha256.slice(0, 12)}… vs ${m.sha256.slice(0, 12)}…)`);
  if (row && row.sizeBytes !== m.sizeBytes) problems.push(`the backups row and the manifest disagree on the size (${row.sizeBytes} vs ${m.sizeBytes} bytes)`);
  if (file.sizeBytes < m.sizeBytes) problems.push(`the file is truncated: ${file.sizeBytes} of ${m.sizeBytes} bytes`);
  else if (file.sizeBytes > m.sizeBytes) problems.push(`the file is longer than the manifest says: ${file.sizeBytes} instead of ${m.sizeBytes} bytes`);
  else if (file.sha256 !== m.sha256) problems.push(`checksum mismatch: the file's sha256 is ${file.sha256}, the manifest says ${m.sha256}`);
  return problems;
}

/** Tables whose row counts differ between the manifest and a restored database. */
export function rowCountProblems(expected: Record<string, number>, actual: Record<string, number>): string[] {
  const problems: string[] = [];
  for (const [table, n] of Object.entries(expected)) {
    if (!(table in actual)) problems.push(`${table}: missing (manifest has ${n} rows)`);
    else if (actual[table] !== n) problems.push(`${table}: ${actual[table]} rows, manifest has ${n}`);
  }
  for (const table of Object.keys(actual)) if (!(table in expected)) problems.push(`${table}: not in the manifest`);
  return problems;
}
