/**
 * Provenance of one served recommendation (ARCHITECTURE.md, "Models and releases"): the answer
 * the gateway recorded, the model version behind it (release → spec hash, image digest, git
 * commit, workflow run), the routing in force at that moment, and the last backup taken before
 * it with the Kafka offsets it holds (where a replay up to the answer must start).
 *
 * A served row names the version that answered (model_version); its release_id is the release
 * in flight at the time, which for a main answer during a canary is the candidate's, not main's.
 * So the model is looked up by version. The first main version (e.g. seed-baseline) was never
 * released: its spec is models/<version>.json and its image and commit were not recorded.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Pool } from '../db.ts';
import { projectRoot } from '../config.ts';
import { lastBackupBefore, type BackupRow } from '../backup/catalog.ts';
import { loadSpec, parseSpec, specHash, type LoadedSpec, type ModelSpec } from '../models/spec.ts';

type Queryable = Pick<Pool, 'query'>;

export class ProvenanceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvenanceError';
  }
}

export interface ServedAnswer {
  id: number;
  servedAt: Date;
  userId: number;
  /** main, nightly, or popular (the gateway's own fallback list). */
  slot: string;
  /** The release in flight when it was served (not necessarily the one that made the model). */
  releaseId: string | null;
  modelVersion: string | null;
  movieIds: string[];
  latencyMs: number;
  fallback: string | null;
}

export interface ReleaseInfo {
  id: string;
  phase: string;
  decision: string | null;
  reason: string | null;
  workflowId: string | null;
  runId: string | null;
  startedAt: Date;
  endedAt: Date | null;
  phaseTimes: Record<string, string>;
}

export interface ModelInfo {
  version: string | null;
  /** release: a releases row; pre-release: the initial main, never released; none: the popular list answered. */
  source: 'release' | 'pre-release' | 'none';
  release: ReleaseInfo | null;
  specPath: string | null;
  /** The hash recorded for the version (the release row), or of the file for a pre-release main. */
  specHash: string | null;
  /** The spec file as it is now in the working tree: whether it still hashes to the recorded hash. */
  specFile: { path: string; exists: boolean; hash: string | null; matches: boolean | null; problem?: string } | null;
  image: string | null;
  imageDigest: string | null;
  gitCommit: string | null;
  /** Why image/commit are missing, when they are. */
  note: string | null;
}

export interface RoutingAt {
  changeId: number;
  changedAt: Date;
  changedBy: string;
  mainVersion: string | null;
  nightlyVersion: string | null;
  nightlyPercent: number | null;
  releaseId: string | null;
}

export interface BackupInfo {
  id: number;
  file: string;
  createdAt: Date;
  sizeBytes: number;
  sha256: string;
  deleted: boolean;
  /** The main version live when it was taken. */
  mainVersion: string | null;
  workflowId: string | null;
  runId: string | null;
  ingestOffsets: { topic: string; partition: number; nextOffset: number }[];
}

export interface Provenance {
  served: ServedAnswer;
  model: ModelInfo;
  routing: RoutingAt | null;
  /** Set when the served version is neither main nor nightly in the routing then in force. */
  routingNote: string | null;
  backup: BackupInfo | null;
}

const servedColumns = `id, served_at AS "servedAt", user_id AS "userId", slot, release_id AS "releaseId",
  model_version AS "modelVersion", movie_ids AS "movieIds", latency_ms AS "latencyMs", fallback`;

function toServed(r: ServedAnswer): ServedAnswer {
  return { ...r, id: Number(r.id), latencyMs: Number(r.latencyMs), movieIds: r.movieIds ?? [] };
}

export async function servedById(db: Queryable, id: number): Promise<ServedAnswer | undefined> {
  const { rows } = await db.query<ServedAnswer>(`SELECT ${servedColumns} FROM served_recommendations WHERE id = $1`, [id]);
  return rows[0] && toServed(rows[0]);
}

/** The answer served to the user nearest before (or at) `at`. */
export async function servedNearestBefore(db: Queryable, userId: number, at: Date): Promise<ServedAnswer | undefined> {
  const { rows } = await db.query<ServedAnswer>(
    `SELECT ${servedColumns} FROM served_recommendations WHERE user_id = $1 AND served_at <= $2 ORDER BY served_at DESC, id DESC LIMIT 1`,
    [userId, at]);
  return rows[0] && toServed(rows[0]);
}

interface ReleaseRow extends ReleaseInfo {
  modelSpec: string;
  spec: unknown;
  specHash: string | null;
  image: string | null;
  imageDigest: string | null;
  gitCommit: string | null;
}

async function releaseRow(db: Queryable, version: string): Promise<ReleaseRow | undefined> {
  const { rows } = await db.query<ReleaseRow>(
    `SELECT id, model_spec AS "modelSpec", spec, spec_hash AS "specHash", image, image_digest AS "imageDigest", git_commit AS "gitCommit",
       workflow_id AS "workflowId", run_id AS "runId", phase, phase_times AS "phaseTimes", decision, reason,
       started_at AS "startedAt", ended_at AS "endedAt"
     FROM releases WHERE id = $1`, [version]);
  return rows[0];
}

/** The spec file as it is now, hashed and compared with the recorded hash. */
function specFileState(file: string, recorded: string | null): NonNullable<ModelInfo['specFile']> {
  const abs = path.resolve(projectRoot, file);
  if (!existsSync(abs)) return { path: file, exists: false, hash: null, matches: null };
  try {
    const hash = loadSpec(file).hash;
    return { path: file, exists: true, hash, matches: recorded === null ? null : hash === recorded };
  } catch (err) {
    return { path: file, exists: true, hash: null, matches: false, problem: (err as Error).message.split('\n').join(' ') };
  }
}

/** The spec file of a version that never had a release: models/<version>.json. */
export const preReleaseSpecPath = (version: string): string => path.join('models', `${version}.json`);

export async function modelInfo(db: Queryable, version: string | null): Promise<ModelInfo> {
  if (version === null) {
    return {
      version: null, source: 'none', release: null, specPath: null, specHash: null, specFile: null, image: null, imageDigest: null, gitCommit: null,
      note: 'answered from the gateway\'s popular list (both slots failed): no model version produced it',
    };
  }
  const r = await releaseRow(db, version);
  if (r) {
    const { modelSpec, spec: _spec, specHash: recordedHash, image, imageDigest, gitCommit, ...release } = r;
    let note: string | null = null;
    if (!image && !gitCommit) note = r.endedAt ? 'the release ended without recording an image or commit (it stopped before the build)' : `not recorded yet: the release is in phase ${r.phase} (recorded when it ends)`;
    return {
      version, source: 'release', release, specPath: modelSpec, specHash: recordedHash, specFile: specFileState(modelSpec, recordedHash),
      image, imageDigest, gitCommit, note,
    };
  }
  const file = preReleaseSpecPath(version);
  const state = specFileState(file, null);
  return {
    version, source: 'pre-release', release: null, specPath: file, specHash: state.hash, specFile: { ...state, matches: null },
    image: null, imageDigest: null, gitCommit: null,
    note: state.exists ? 'unknown (pre-release main): this version was never released, so no image or commit was recorded' : `unknown (pre-release main), and ${file} is not in the working tree`,
  };
}

/** The routing in force at `at`: the last change logged at or before it. */
export async function routingAt(db: Queryable, at: Date): Promise<RoutingAt | null> {
  const { rows } = await db.query<{ id: number; changedAt: Date; changedBy: string; after: Record<string, unknown> }>(
    `SELECT id, changed_at AS "changedAt", changed_by AS "changedBy", after FROM routing_changes
     WHERE changed_at <= $1 ORDER BY changed_at DESC, id DESC LIMIT 1`, [at]);
  const r = rows[0];
  if (!r) return null;
  const s = (k: string) => (typeof r.after?.[k] === 'string' ? (r.after[k] as string) : null);
  return {
    changeId: Number(r.id), changedAt: r.changedAt, changedBy: r.changedBy,
    mainVersion: s('mainVersion'), nightlyVersion: s('nightlyVersion'),
    nightlyPercent: typeof r.after?.nightlyPercent === 'number' ? r.after.nightlyPercent : null, releaseId: s('releaseId'),
  };
}

/** backups.release_id holds the main version live when the backup was taken (the manifest's release.mainVersion). */
export function backupInfo(b: BackupRow): BackupInfo {
  return {
    id: Number(b.id), file: b.file, createdAt: b.createdAt, sizeBytes: Number(b.sizeBytes), sha256: b.sha256, deleted: b.deletedAt !== null,
    mainVersion: b.releaseId, workflowId: b.workflowId, runId: b.runId,
    ingestOffsets: (b.ingestOffsets ?? []).map((o) => ({ topic: o.topic, partition: Number(o.partition), nextOffset: Number(o.nextOffset) })),
  };
}

export async function provenanceOf(db: Queryable, served: ServedAnswer): Promise<Provenance> {
  const [model, routing, backup] = await Promise.all([
    modelInfo(db, served.modelVersion),
    routingAt(db, served.servedAt),
    lastBackupBefore(db as Pool, served.servedAt),
  ]);
  let routingNote: string | null = null;
  if (routing && served.modelVersion !== null) {
    const expected = served.slot === 'main' ? routing.mainVersion : served.slot === 'nightly' ? routing.nightlyVersion : null;
    if (expected !== null && expected !== served.modelVersion) {
      routingNote = `the routing change ${routing.changeId} in force then has ${served.slot} = ${expected}, but the answer names ${served.modelVersion} (the gateway picks up changes a moment later)`;
    }
  }
  return { served, model, routing, routingNote, backup: backup ? backupInfo(backup) : null };
}

/**
 * The spec that ran as `version`: the copy stored in the release row (what was really baked,
 * checked against its recorded hash), else the file of a pre-release main.
 */
export async function specForVersion(db: Queryable, version: string): Promise<LoadedSpec & { source: 'release' | 'file' }> {
  const r = await releaseRow(db, version);
  if (r && r.spec !== null && r.spec !== undefined) {
    let spec: ModelSpec;
    try {
      spec = parseSpec(r.spec, `release ${version}`);
    } catch (err) {
      throw new ProvenanceError(`the spec stored for release ${version} is not valid: ${(err as Error).message}`);
    }
    const hash = specHash(spec);
    if (r.specHash && r.specHash !== hash) throw new ProvenanceError(`the spec stored for release ${version} hashes to ${hash}, but the release recorded ${r.specHash}`);
    return { spec, hash, path: r.modelSpec, source: 'release' };
  }
  const file = r?.modelSpec ?? preReleaseSpecPath(version);
  try {
    const loaded = loadSpec(file);
    if (r?.specHash && r.specHash !== loaded.hash) throw new ProvenanceError(`${file} hashes to ${loaded.hash} now, but release ${version} recorded ${r.specHash}: the file changed since`);
    return { ...loaded, source: 'file' };
  } catch (err) {
    if (err instanceof ProvenanceError) throw err;
    throw new ProvenanceError(`no spec for version ${version}: ${(err as Error).message.split('\n').join(' ')}`);
  }
}

// ---- text ----------------------------------------------------------------------------------

const iso = (d: Date | null | undefined): string => (d ? d.toISOString() : '–');

/** Offsets grouped by topic: "movielog p0=120 p1=98 …". */
export function formatOffsets(offsets: BackupInfo['ingestOffsets']): string[] {
  if (offsets.length === 0) return ['(none: nothing had been ingested)'];
  const byTopic = new Map<string, string[]>();
  for (const o of [...offsets].sort((a, b) => a.partition - b.partition)) {
    if (!byTopic.has(o.topic)) byTopic.set(o.topic, []);
    byTopic.get(o.topic)!.push(`p${o.partition}=${o.nextOffset}`);
  }
  return [...byTopic].map(([topic, parts]) => `${topic}: ${parts.join(' ')}`);
}

export function formatProvenance(p: Provenance): string {
  const s = p.served;
  const m = p.model;
  const lines: string[] = [];
  lines.push(`served recommendation ${s.id}`);
  lines.push(`  served at    ${iso(s.servedAt)}`);
  lines.push(`  user         ${s.userId}`);
  lines.push(`  slot         ${s.slot}${s.fallback ? ` (fallback: ${s.fallback})` : ''}`);
  lines.push(`  latency      ${s.latencyMs} ms`);
  lines.push(`  release then ${s.releaseId ?? '– (no release in flight)'}`);
  lines.push(`  movies (${s.movieIds.length})  ${s.movieIds.join(', ')}`);
  lines.push('');
  lines.push(`model version ${m.version ?? '–'} (${m.source === 'release' ? 'released' : m.source === 'pre-release' ? 'pre-release main' : 'no model'})`);
  if (m.specPath) {
    lines.push(`  spec         ${m.specPath}`);
    lines.push(`  spec sha256  ${m.specHash ?? '–'}`);
    const f = m.specFile;
    if (f && m.source === 'release') {
      const now = !f.exists ? 'the file is no longer in the working tree (the release row keeps the spec)'
        : f.problem ? `the file no longer parses: ${f.problem}`
          : f.matches ? 'the file in the working tree still has this hash' : `the file in the working tree now hashes to ${f.hash} (changed since the release)`;
      lines.push(`               ${now}`);
    }
  }
  lines.push(`  image        ${m.image ?? 'unknown'}`);
  lines.push(`  digest       ${m.imageDigest ?? 'unknown'}`);
  lines.push(`  git commit   ${m.gitCommit ?? 'unknown'}`);
  if (m.release) {
    const r = m.release;
    lines.push(`  workflow     ${r.workflowId ?? '–'} run ${r.runId ?? '–'}`);
    lines.push(`  phase        ${r.phase}${r.decision ? `, decision ${r.decision}` : ''}${r.reason ? `: ${r.reason}` : ''}`);
    lines.push(`  started      ${iso(r.startedAt)}  ended ${iso(r.endedAt)}`);
  }
  if (m.note) lines.push(`  note         ${m.note}`);
  if (p.routing) {
    const r = p.routing;
    lines.push('');
    lines.push(`routing then  change ${r.changeId} at ${iso(r.changedAt)} by ${r.changedBy}: main ${r.mainVersion ?? '–'}, nightly ${r.nightlyVersion ?? '–'} at ${r.nightlyPercent ?? 0}%${r.releaseId ? `, release ${r.releaseId}` : ''}`);
    if (p.routingNote) lines.push(`  note         ${p.routingNote}`);
  }
  lines.push('');
  if (p.backup) {
    const b = p.backup;
    lines.push(`last backup before it  ${b.id}${b.deleted ? ' (its file was removed by retention)' : ''}`);
    lines.push(`  file         ${b.file}`);
    lines.push(`  taken at     ${iso(b.createdAt)} (${(b.sizeBytes / 1e6).toFixed(1)} MB, main ${b.mainVersion ?? '–'})`);
    lines.push(`  sha256       ${b.sha256}`);
    if (b.workflowId) lines.push(`  workflow     ${b.workflowId} run ${b.runId ?? '–'}`);
    const offsets = formatOffsets(b.ingestOffsets);
    lines.push(`  kafka offsets (next to read) ${offsets[0]}`);
    for (const o of offsets.slice(1)) lines.push(`                               ${o}`);
  } else {
    lines.push('last backup before it  none (a replay must start from the beginning of the Kafka log)');
  }
  return lines.join('\n');
}
