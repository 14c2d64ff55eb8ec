/** cfg.backup.schedule ("every 6h") as the interval a Temporal Schedule takes ("6h"). */
export function scheduleInterval(cadence: string): string {
  const m = /^every (\d+)(m|h|d)$/.exec(cadence.trim());
  if (!m || Number(m[1]) < 1) throw new Error(`bad backup schedule "${cadence}": expected "every <n>m|h|d", e.g. "every 6h"`);
  return `${Number(m[1])}${m[2]}`;
}

export const BACKUP_SCHEDULE_ID = 'marquee-backup';
