/**
 * The CanaryRelease input and its validation. Pure code (its only import is lib/duration.ts), so the workflow (which
 * runs in Temporal's deterministic sandbox) and the CLI share one set of rules and messages.
 */
import { parseDuration } from '../duration.ts';

export interface ReleaseInput {
  /** `^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$`; the workflow id is `release-<version>`. */
  version: string;
  /** Path of the model spec, e.g. models/affinity-v1.json. */
  model: string;
  /** Share of users routed to nightly during the bake, 1–50. */
  percent?: number;
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
const KNOWN_FIELDS = ['version', 'model', 'percent', 'bake', 'interval', 'notify'];

/** Returns the problems with an input, each naming its field; empty when the input is valid. */
export function releaseInputProblems(input: unknown): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return ['input: expected one JSON object such as {"version":"v2","model":"models/x.json"}'];
  const o = input as Record<string, unknown>;
  const problems: string[] = [];
  for (const k of Object.keys(o)) if (!KNOWN_FIELDS.includes(k)) problems.push(`${k}: unknown field (known: ${KNOWN_FIELDS.join(', ')})`);
  if (typeof o.version !== 'string' || !VERSION_PATTERN.test(o.version)) {
    problems.push(`version: must match ${VERSION_PATTERN.source} (got ${JSON.stringify(o.version)})`);
  }
  if (typeof o.model !== 'string' || !/^models\/[\w.-]+\.json$/.test(o.model)) {
    problems.push(`model: must be a spec path such as models/x.json (got ${JSON.stringify(o.model)})`);
  }
  if (o.percent !== undefined && (typeof o.percent !== 'number' || !Number.isInteger(o.percent) || o.percent < 1 || o.percent > 50)) {
    problems.push(`percent: must be an integer from 1 to 50 (got ${JSON.stringify(o.percent)})`);
  }
  for (const k of ['bake', 'interval'] as const) {
    const v = o[k];
    if (v !== undefined && (typeof v !== 'string' || parseDuration(v) === undefined || parseDuration(v)! <= 0)) {
      problems.push(`${k}: must be a duration such as 90s, 30m or 12h (got ${JSON.stringify(v)})`);
    }
  }
  if (o.notify !== undefined && (!Array.isArray(o.notify) || o.notify.some((a) => typeof a !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(a)))) {
    problems.push(`notify: must be a list of e-mail addresses (got ${JSON.stringify(o.notify)})`);
  }
  return problems;
}

/** Fills omitted fields from the deployment defaults; call only on a valid input. */
export function resolveReleaseInput(input: ReleaseInput, d: ReleaseDefaults): ResolvedReleaseInput {
  const bake = input.bake ?? d.bake;
  const interval = input.interval ?? d.interval;
  const bakeMs = parseDuration(bake)!;
  // An interval longer than the bake would never check the guardrails.
  const intervalMs = Math.min(parseDuration(interval)!, bakeMs);
  return {
    version: input.version,
    model: input.model,
    percent: input.percent ?? d.percent,
    bake,
    interval,
    notify: input.notify ?? d.notify,
    bakeMs,
    intervalMs,
    maxConsecutiveGuardrailFailures: d.maxConsecutiveGuardrailFailures,
    inconclusiveExtensionMs: parseDuration(d.inconclusiveExtension)!,
  };
}
