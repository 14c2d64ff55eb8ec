/**
 * `reproduce`: rebuilds the data as it was when an answer was served and ranks again with the
 * version that served it. The last usable backup before the answer is restored into a scratch
 * database (or an empty one is migrated when there is none), Kafka is replayed from the backup's
 * offsets up to the answer's time, and the version's spec ranks the user as of that time in
 * process, with the code offline evaluation shares with the inference service (lib/models via
 * lib/eval/offline.ts). The live database is only read.
 *
 * What cannot be rebuilt: ChromaDB keeps no history, so the spec's collection is read as it is
 * now; catalog metadata (popularity, runtime) is as of the backup, not the answer.
 */
import { existsSync } from 'node:fs';
import type { Config } from '../config.ts';
import type { Pool } from '../db.ts';
import { listBackups, type BackupRow } from '../backup/catalog.ts';
import { chromaVectors, evaluateSpec, type Split, type VectorLoader } from '../eval/offline.ts';
import { readHistory } from '../models/history.ts';
import { dropScratch, freshScratch, restoreScratch, scratchName, verifiedManifest, type Scratch } from './scratch.ts';
import { replayUntil, type ReplayResult } from './replay.ts';
import { backupInfo, ProvenanceError, specForVersion, type BackupInfo, type ServedAnswer } from './trace.ts';

export interface ReproduceOptions {
  /** The Kafka topic ingest read; by default the one the backup's offsets name, else cfg.kafka.topic. */
  topic?: string;
  /** Keep the scratch database afterwards (default: drop it). */
  keep?: boolean;
  /** Scratch database name (must start with marquee_repro_); default marquee_repro_<served id>. */
  scratch?: string;
  graceMs?: number;
  vectors?: VectorLoader;
  progress?: (line: string) => void;
}

export interface Comparison {
  match: boolean;
  /** Positions where both lists hold the same id. */
  samePositions: number;
  /** Ids in both lists, in any position. */
  overlap: number;
  servedCount: number;
  reproducedCount: number;
}

export interface ReproduceResult {
  servedId: number;
  userId: number;
  servedAt: string;
  slot: string;
  version: string;
  spec: { path: string; hash: string; source: 'release' | 'file'; rule: string; collection: string };
  backup: (BackupInfo & { skipped?: string[] }) | null;
  /** Why no backup was used, when none was. */
  noBackup: string | null;
  scratchDatabase: string;
  kept: boolean;
  migrated: string[];
  replay: ReplayResult;
  /** Entries in the user's history as of the answer, in the scratch data. */
  historyEntries: number;
  outcome: 'model' | 'cold-start';
  vectors: number;
  served: string[];
  reproduced: string[];
  comparison: Comparison;
  /** Why the lists may legitimately differ (fallbacks), when they do. */
  caveats: string[];
  ms: { restore: number; replay: number; rank: number; total: number };
}

export function compareLists(served: readonly string[], reproduced: readonly string[]): Comparison {
  const set = new Set(reproduced);
  let same = 0;
  served.forEach((id, i) => { if (reproduced[i] === id) same++; });
  return {
    match: served.length === reproduced.length && same === served.length,
    samePositions: same,
    overlap: served.filter((id) => set.has(id)).length,
    servedCount: served.length,
    reproducedCount: reproduced.length,
  };
}

/**
 * The newest backup at or before `at` that can still be restored (not removed by retention, file
 * present); the ones passed over are named so the output can say why.
 */
async function usableBackup(live: Pool, at: Date): Promise<{ row: BackupRow | null; skipped: string[] }> {
  const skipped: string[] = [];
  // Newest first; a backup older than the newest usable one is never looked at.
  for (const b of await listBackups(live, { includeDeleted: true })) {
    if (b.createdAt.getTime() > at.getTime()) continue;
    if (b.deletedAt) { skipped.push(`backup ${b.id}: removed by retention`); continue; }
    if (!existsSync(b.file)) { skipped.push(`backup ${b.id}: its file ${b.file} is missing`); continue; }
    return { row: b, skipped };
  }
  return { row: null, skipped };
}

export async function reproduce(cfg: Config, live: Pool, served: ServedAnswer, opts: ReproduceOptions = {}): Promise<ReproduceResult> {
  const t0 = Date.now();
  const log = opts.progress ?? (() => undefined);
  if (served.modelVersion === null) {
    throw new ProvenanceError(`served recommendation ${served.id} came from the gateway's popular list (${served.fallback ?? 'both slots failed'}), not from a model version: there is nothing to rank again`);
  }
  const version = served.modelVersion;
  const loaded = await specForVersion(live, version);

  const { row, skipped } = await usableBackup(live, served.servedAt);
  const name = opts.scratch ?? scratchName(served.id);
  let scratch: Scratch;
  let noBackup: string | null = null;
  if (row) {
    log(`restoring backup ${row.id} (${row.file}) into ${name}`);
    const manifest = await verifiedManifest(row.file, { sizeBytes: Number(row.sizeBytes), sha256: row.sha256, file: row.file });
    scratch = await restoreScratch(cfg, name, row.file, manifest);
  } else {
    noBackup = skipped.length
      ? `no usable backup before ${served.servedAt.toISOString()} (${skipped.join('; ')}): replaying from the start of the Kafka log into a freshly migrated database`
      : `no backup before ${served.servedAt.toISOString()}: replaying from the start of the Kafka log into a freshly migrated database`;
    log(noBackup);
    scratch = await freshScratch(cfg, name);
  }
  const tRestored = Date.now();

  let kept = false;
  try {
    const backup = row ? { ...backupInfo(row), ...(skipped.length ? { skipped } : {}) } : null;
    const backupTopics = [...new Set((backup?.ingestOffsets ?? []).map((o) => o.topic))];
    const topic = opts.topic ?? (backupTopics.length === 1 ? backupTopics[0] : cfg.kafka.topic);
    const from = new Map((backup?.ingestOffsets ?? []).filter((o) => o.topic === topic).map((o) => [o.partition, o.nextOffset]));
    log(`replaying ${topic} up to ${served.servedAt.toISOString()}`);
    const replay = await replayUntil(cfg, scratch.pool, { topic, from, until: served.servedAt, graceMs: opts.graceMs, progress: log });
    const tReplayed = Date.now();

    // One user, ranked as of the answer's time exactly as offline evaluation ranks (same lists, same rank()).
    const split: Split = {
      cutoff: served.servedAt, cutoffRule: 'the time of the answer', activeUsers: 1,
      users: [{ userId: served.userId, targets: new Set() }], catalogSize: 0, popularityPercentile: new Map(),
    };
    const history = await readHistory(scratch.pool, served.userId, served.servedAt, { timeoutMs: 30_000 });
    const scores = await evaluateSpec(scratch.pool, split, loaded, { vectors: opts.vectors ?? chromaVectors(cfg), concurrency: 1 });
    const reproduced = scores.lists.get(served.userId) ?? [];
    const tRanked = Date.now();

    const comparison = compareLists(served.movieIds, reproduced);
    const caveats: string[] = [];
    if (!comparison.match) {
      if (served.fallback) caveats.push(`the gateway recorded a fallback (${served.fallback}); the slot that answered may have served its cached list`);
      if (replay.partitions.some((p) => p.lost > 0)) caveats.push('Kafka retention removed messages after the backup: the replayed data is incomplete');
      caveats.push('the inference service answers from its cached popular list when it runs past its deadline or Postgres fails, and reads vectors as they were then (ChromaDB keeps no history)');
    }
    kept = opts.keep === true;
    return {
      servedId: served.id, userId: served.userId, servedAt: served.servedAt.toISOString(), slot: served.slot, version,
      spec: { path: loaded.path, hash: loaded.hash, source: loaded.source, rule: loaded.spec.rule, collection: loaded.spec.collection },
      backup, noBackup, scratchDatabase: scratch.name, kept, migrated: scratch.migrated, replay,
      historyEntries: history.length, outcome: scores.coldStartUsers > 0 ? 'cold-start' : 'model', vectors: scores.vectors,
      served: served.movieIds, reproduced, comparison, caveats,
      ms: { restore: tRestored - t0, replay: tReplayed - tRestored, rank: tRanked - tReplayed, total: Date.now() - t0 },
    };
  } finally {
    await scratch.pool.end().catch(() => undefined);
    if (!kept) await dropScratch(cfg, scratch.name);
  }
}

// ---- text ----------------------------------------------------------------------------------

export function formatReproduce(r: ReproduceResult): string {
  const lines: string[] = [];
  lines.push(`reproduce served recommendation ${r.servedId}: user ${r.userId} at ${r.servedAt}, slot ${r.slot}, version ${r.version}`);
  lines.push(`  spec      ${r.spec.path} (${r.spec.source === 'release' ? 'as stored in the release' : 'file'}), sha256 ${r.spec.hash}`);
  lines.push(`            rule ${r.spec.rule}, vectors from ChromaDB collection ${r.spec.collection} (${r.vectors} now; ChromaDB keeps no history)`);
  if (r.backup) {
    lines.push(`  data      backup ${r.backup.id} taken ${r.backup.createdAt.toISOString()} (${r.backup.file}), checksum verified, restored into ${r.scratchDatabase}${r.migrated.length ? `, then migrated: ${r.migrated.join(', ')}` : ''}`);
    for (const s of r.backup.skipped ?? []) lines.push(`            passed over ${s}`);
  } else {
    lines.push(`  data      ${r.noBackup}`);
    lines.push(`            scratch database ${r.scratchDatabase}`);
  }
  const parts = r.replay.partitions.map((p) => `p${p.partition} ${p.from}→${p.readTo} (${p.written} written${p.later ? `, ${p.later} later skipped` : ''}${p.lost ? `, ${p.lost} LOST to retention` : ''})`);
  lines.push(`  replay    ${r.replay.topic} up to ${r.replay.until}: ${r.replay.written} messages; ${parts.join(', ') || 'no partitions'}`);
  lines.push(`  rank      as of ${r.servedAt} in process: ${r.outcome === 'model' ? `ranked from ${r.historyEntries} history entries` : 'no history (cold-start list)'}`);
  lines.push(`  time      restore ${r.ms.restore} ms, replay ${r.ms.replay} ms, rank ${r.ms.rank} ms`);
  lines.push('');
  const n = Math.max(r.served.length, r.reproduced.length);
  const width = Math.max(6, ...r.served.map((s) => s.length));
  lines.push(`   #  ${'served'.padEnd(width)}  reproduced`);
  for (let i = 0; i < n; i++) {
    const a = r.served[i] ?? '';
    const b = r.reproduced[i] ?? '';
    lines.push(`  ${String(i + 1).padStart(2)}  ${a.padEnd(width)}  ${b}${a === b ? '' : '   ≠'}`);
  }
  lines.push('');
  const c = r.comparison;
  lines.push(c.match
    ? `result: MATCH: the same ${c.servedCount} movies in the same order`
    : `result: DIFFERENT: ${c.samePositions} of ${c.servedCount} at the same position, ${c.overlap} in both lists (reproduced ${c.reproducedCount})`);
  for (const cv of r.caveats) lines.push(`  note: ${cv}`);
  lines.push(r.kept ? `scratch database ${r.scratchDatabase} kept (drop it with: DROP DATABASE ${r.scratchDatabase})` : `scratch database ${r.scratchDatabase} dropped (--keep keeps it)`);
  return lines.join('\n');
}
