/**
 * One report end to end: the rows from Postgres, the figures, the loop verdicts, and the two
 * files (report.json, report.html) in the output directory.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Pool } from '../db.ts';
import { buildReport, catalogIds, type Report } from './build.ts';
import { loadReportData, type Period } from './data.ts';
import { renderHtml, reportCharts } from './html.ts';
import { DEFAULT_LOOP_THRESHOLDS, detectLoops, type LoopReport, type LoopThresholds } from './loops.ts';

export interface ReportOptions extends Period {
  attributionWindowMs: number;
  /** Width of the loop-detection windows; default: the period in 8. */
  windowMs?: number;
  thresholds?: Partial<LoopThresholds>;
  /** Groups with fewer lists of known outcome stay out of the spread between groups. */
  minGroupLists?: number;
  now?: Date;
}

export async function makeReport(db: Pick<Pool, 'query'>, o: ReportOptions): Promise<Report & { loops: LoopReport }> {
  const data = await loadReportData(db, o, o.attributionWindowMs, o.now);
  const report = buildReport(data, o.attributionWindowMs, o.now, o.minGroupLists);
  const windowMs = o.windowMs ?? Math.max(60_000, Math.ceil((data.until - data.since) / 8));
  const loops = detectLoops(data, catalogIds(data).length, windowMs, { ...DEFAULT_LOOP_THRESHOLDS, ...o.thresholds });
  return { ...report, loops };
}

/** Writes report.json (the figures, without the per-movie exposure arrays) and report.html; returns the paths. */
export function writeReport(report: Report, outDir: string): { json: string; html: string; charts: number } {
  mkdirSync(outDir, { recursive: true });
  const json = path.join(outDir, 'report.json');
  const html = path.join(outDir, 'report.html');
  const slim = { ...report, slots: Object.fromEntries(Object.entries(report.slots).map(([k, { exposureCounts, ...rest }]) => [k, { ...rest, exposureCountsLength: exposureCounts.length }])) };
  writeFileSync(json, JSON.stringify(slim, null, 2) + '\n');
  const charts = reportCharts(report);
  writeFileSync(html, renderHtml(report, charts));
  return { json, html, charts: charts.length };
}
