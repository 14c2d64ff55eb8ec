/**
 * Durations as the project writes them everywhere (temporal.yaml, release input, CLI flags):
 * an integer and one unit, ms, s, m, h or d. No imports, so workflow code may use it too.
 */

export const DURATION_PATTERN = /^(\d+)(ms|s|m|h|d)$/;
export const DURATION_HINT = 'expected a duration such as 90s, 30m, 12h or 7d';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Milliseconds, or undefined when the text is not exactly a duration (no surrounding spaces). */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_PATTERN.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}

/** Milliseconds of a duration such as 90s, 30m, 12h or 7d (spaces around it allowed); throws naming the text otherwise. */
export function durationMs(text: string): number {
  const ms = parseDuration(text.trim());
  if (ms === undefined) throw new Error(`bad duration "${text}": expected a number followed by ms, s, m, h or d`);
  return ms;
}
