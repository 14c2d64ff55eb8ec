/**
 * The CanaryRelease input and its validation (a zod schema). Pure and deterministic (zod and
 * lib/duration.ts only), so the workflow, which runs in Temporal's sandbox, and the CLI share one
 * set of rules and messages.
 */
import { z } from 'zod';
import { parseDuration } from '../duration.ts';

export interface ReleaseInput {
  /** `^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$`; the workflow id is `release-<version>`. */
  version: string;
  /** Path of the model spec, e.g. models/affinity-v1.json. */
  model: string;
  /** Share of users routed to nightly during the bake, 1–50. */
  percent?: number;
  /**
   * Progressive traffic steps, e.g. [5, 20, 50]: each step bakes for `bake` and the judge decides at
   * its end. Increasing percents from 1 to 50, at most MAX_STEPS; without it, one step at `percent`.
   */
  steps?: number[];
  /** Bake duration such as 12h or 90s. */
  bake?: string;
  /** Analysis interval during the bake (guardrail checks). */
  interval?: string;
  /** E-mail recipients of the outcome. */
  notify?: string[];
}

export interface ReleaseDefaults {
  percent: number;
  bake: string;
  interval: string;
  notify: string[];
  maxConsecutiveGuardrailFailures: number;
  inconclusiveExtension: string;
}

export type ResolvedReleaseInput = Required<ReleaseInput> & {
  bakeMs: number;
  intervalMs: number;
  maxConsecutiveGuardrailFailures: number;
  inconclusiveExtensionMs: number;
};

export const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$/;
export const MAX_STEPS = 5;
const KNOWN_FIELDS = ['version', 'model', 'percent', 'steps', 'bake', 'interval', 'notify'] as const;

const positiveDuration = z.string().refine((v) => (parseDuration(v) ?? 0) > 0);

export const releaseInputSchema = z.strictObject({
  version: z.string().regex(VERSION_PATTERN),
  model: z.string().regex(/^models\/[\w.-]+\.json$/),
  percent: z.number().int().min(1).max(50).optional(),
  steps: z.array(z.number().int().min(1).max(50)).min(1).max(MAX_STEPS)
    .refine((s) => s.every((p, i) => i === 0 || p > s[i - 1])).optional(),
  bake: positiveDuration.optional(),
  interval: positiveDuration.optional(),
  notify: z.array(z.string().regex(/^[^@\s]+@[^@\s]+$/)).optional(),
});

/** What each field must be, said the same way by the CLI and by the workflow's failure. */
const RULES: Record<(typeof KNOWN_FIELDS)[number], string> = {
  version: `must match ${VERSION_PATTERN.source}`,
  model: 'must be a spec path such as models/x.json',
  percent: 'must be an integer from 1 to 50',
  steps: `must be 1 to ${MAX_STEPS} increasing integer percents from 1 to 50, such as [5, 20, 50]`,
  bake: 'must be a duration such as 90s, 30m or 12h',
  interval: 'must be a duration such as 90s, 30m or 12h',
  notify: 'must be a list of e-mail addresses',
};

/** Returns the problems with an input, each naming its field; empty when the input is valid. */
export function releaseInputProblems(input: unknown): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return ['input: expected one JSON object such as {"version":"v2","model":"models/x.json"}'];
  const r = releaseInputSchema.safeParse(input);
  if (r.success) {
    // Both would leave it unclear which share the first bake gets.
    if (r.data.percent !== undefined && r.data.steps !== undefined) return ['steps: give either percent (one step) or steps, not both'];
    return [];
  }
  const o = input as Record<string, unknown>;
  const unknown: string[] = [];
  const bad = new Set<string>();
  for (const issue of r.error.issues) {
    if (issue.code === 'unrecognized_keys') unknown.push(...issue.keys);
    else bad.add(String(issue.path[0]));
  }
  return [
    ...unknown.map((k) => `${k}: unknown field (known: ${KNOWN_FIELDS.join(', ')})`),
    ...KNOWN_FIELDS.filter((k) => bad.has(k)).map((k) => `${k}: ${RULES[k]} (got ${JSON.stringify(o[k])})`),
  ];
}

/** Fills omitted fields from the deployment defaults; call only on a valid input. */
export function resolveReleaseInput(input: ReleaseInput, d: ReleaseDefaults): ResolvedReleaseInput {
  const bake = input.bake ?? d.bake;
  const interval = input.interval ?? d.interval;
  const bakeMs = parseDuration(bake)!;
  // An interval longer than the bake would never check the guardrails.
  const intervalMs = Math.min(parseDuration(interval)!, bakeMs);
  const steps = input.steps ?? [input.percent ?? d.percent];
  return {
    version: input.version,
    model: input.model,
    // The first step's share; the status query reports the current step's.
    percent: steps[0],
    steps,
    bake,
    interval,
    notify: input.notify ?? d.notify,
    bakeMs,
    intervalMs,
    maxConsecutiveGuardrailFailures: d.maxConsecutiveGuardrailFailures,
    inconclusiveExtensionMs: parseDuration(d.inconclusiveExtension)!,
  };
}
