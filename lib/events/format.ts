/**
 * The inverse of parser.ts: a typed event back to the exact course line. Used by the simulator
 * and the MovieLens importer, so that what they write is by construction what ingest reads.
 * For every event the parser can produce, parseLine(formatEvent(e)) gives back e.
 */
import type { LogEvent } from './types.ts';

/** `atIso` without its `Z`: course lines carry no zone. */
function lineTime(atIso: string): string {
  return atIso.endsWith('Z') ? atIso.slice(0, -1) : atIso;
}

export function formatEvent(e: LogEvent): string {
  const head = `${lineTime(e.atIso)},${e.userId},`;
  switch (e.kind) {
    case 'watch':
      return `${head}GET /data/m/${e.movieId}/${e.minute}.mpg`;
    case 'rate':
      return `${head}GET /rate/${e.movieId}=${e.rating}`;
    case 'account':
      return `${head}GET /create_account`;
    case 'recommendation': {
      const result = e.error !== null ? e.error : e.movieIds.join(', ');
      // "result: , 12 ms" keeps the comma before the latency even for an empty answer.
      return `${head}recommendation request ${e.server}, status ${e.status}, result: ${result}, ${e.latencyMs} ms`;
    }
  }
}

/**
 * The event time fields for epoch milliseconds, with millisecond digits as the course writes them
 * (`2025-01-02T10:15:30.123Z`). Years 0001-9999 only, as the parser accepts.
 */
export function atFromMs(ms: number): { atIso: string; atMs: number } {
  const atMs = Math.trunc(ms);
  return { atIso: new Date(atMs).toISOString(), atMs };
}
