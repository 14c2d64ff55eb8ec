export interface RetainedBackup { id: number; file: string; createdAtMs: number }

/**
 * The backups retention removes: a backup is kept when it is one of the newest `keepLast`, or
 * younger than `keepYoungerThanMs`; everything else goes. Ties on time keep the higher id.
 */
export function expiredBackups<T extends RetainedBackup>(backups: readonly T[], nowMs: number, keepLast: number, keepYoungerThanMs: number): T[] {
  if (!Number.isInteger(keepLast) || keepLast < 1) throw new Error(`keepLast must be a positive integer, got ${keepLast}`);
  const newestFirst = [...backups].sort((a, b) => b.createdAtMs - a.createdAtMs || b.id - a.id);
  return newestFirst.filter((b, i) => i >= keepLast && nowMs - b.createdAtMs >= keepYoungerThanMs);
}
