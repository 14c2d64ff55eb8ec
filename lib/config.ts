import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DURATION_HINT, DURATION_PATTERN } from './duration.ts';
import { evaluationSchema } from './eval/settings.ts';

/** The repository root, so paths in the config resolve the same from any working directory. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const duration = z.string().regex(DURATION_PATTERN, DURATION_HINT);
const port = z.number().int().min(1).max(65535);
const hostPort = z.string().regex(/^[^:\s]+:\d{1,5}$/, 'expected host:port');

export const configSchema = z.strictObject({
  temporal: z.strictObject({
    address: hostPort,
    namespace: z.string().min(1),
    taskQueue: z.string().min(1),
    uiPort: port,
    /** Where the dev server serves its own Prometheus metrics (Prometheus scrapes it). */
    metricsPort: port.default(8234),
  }),
  kafka: z.strictObject({
    brokers: z.array(hostPort).min(1),
    topic: z.string().min(1),
    partitions: z.number().int().min(1).max(1000),
    clientId: z.string().min(1),
    groupId: z.string().min(1),
  }),
  postgres: z.strictObject({ url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a postgresql:// URL') }),
  chroma: z.strictObject({ url: z.url() }),
  /** Where inference slots run: Docker containers, local processes, or Docker when its engine answers. Decided once per process. */
  runtime: z.enum(['auto', 'docker', 'process']).default('auto'),
  services: z.strictObject({
    gateway: z.strictObject({
      port,
      /** Where the gateway listens; beyond loopback it needs a real admin token (lib/admin-token.ts). */
      host: z.string().min(1).default('127.0.0.1'),
      adminToken: z.string().min(8, 'the admin token must have at least 8 characters'),
    }),
    inferenceMain: z.strictObject({ port }),
    inferenceNightly: z.strictObject({ port }),
    simulator: z.strictObject({ port }),
    /** threads: consumers in one ingest process, each a member of the group (services/ingest/threads.ts). */
    ingest: z.strictObject({ port, threads: z.number().int().min(1).max(16).default(2) }),
    catalog: z.strictObject({ port }),
    /** The worker's /healthz, /metrics (release phase) and the inference slots' discovery for Prometheus. */
    worker: z.strictObject({ port }).default({ port: 8094 }),
  }),
  smtp: z.strictObject({
    host: z.string().min(1),
    port,
    secure: z.boolean(),
    from: z.string().min(3),
    to: z.array(z.string().min(3)),
  }),
  release: z.strictObject({
    percent: z.number().int().min(1).max(50),
    bake: duration,
    interval: duration,
    maxConsecutiveGuardrailFailures: z.number().int().min(1),
    inconclusiveExtension: duration,
  }),
  evaluation: evaluationSchema.optional(),
  /** Prometheus and Alertmanager of the local stack (stack/components/prometheus.ts, alertmanager.ts). */
  monitoring: z.strictObject({
    prometheusPort: port,
    alertmanagerPort: port,
    scrapeInterval: duration,
  }).default({ prometheusPort: 9090, alertmanagerPort: 9095, scrapeInterval: '15s' }),
  backup: z.strictObject({
    dir: z.string().min(1),
    schedule: z.string().regex(/^every \d+(m|h|d)$/, 'expected a cadence such as "every 6h"'),
    keepLast: z.number().int().min(1),
    keepYoungerThan: duration,
  }),
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(source: string, problems: string[]) {
    super(`invalid configuration in ${source}:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Turns MARQUEE_A_B_C=value into an override of key a.b.c, matching key names case-insensitively. */
function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, problems: string[]): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('MARQUEE_') || value === undefined) continue;
    // Not config keys: where the config and the state live, and switches read by the stack and tests.
    if (['MARQUEE_CONFIG', 'MARQUEE_HOME', 'MARQUEE_DOCKER', 'MARQUEE_KAFKA_QUIET', 'MARQUEE_GIT_COMMIT', 'MARQUEE_WORKER_LOG'].includes(name)) continue;
    const parts = name.slice('MARQUEE_'.length).toLowerCase().split('_');
    let node: any = raw;
    let ok = true;
    for (let i = 0; i < parts.length; i++) {
      if (node === null || typeof node !== 'object') { ok = false; break; }
      const key = Object.keys(node).find((k) => k.toLowerCase() === parts[i]);
      if (key === undefined) { ok = false; break; }
      if (i === parts.length - 1) {
        const current = node[key];
        if (typeof current === 'number') node[key] = value.trim() === '' ? NaN : Number(value);
        else if (typeof current === 'boolean') node[key] = value === 'true' ? true : value === 'false' ? false : value;
        else if (Array.isArray(current)) node[key] = value.split(',').map((s) => s.trim()).filter(Boolean);
        else node[key] = value;
      } else node = node[key];
    }
    if (!ok) problems.push(`${name}: no such configuration key`);
  }
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.join('.') || '(root)';
  if (issue.code === 'unrecognized_keys') return `${key === '(root)' ? '' : key + '.'}${issue.keys.join(', ')}: unknown key`;
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) return `${key}: missing key`;
  return `${key}: ${issue.message}`;
}

/** Validates a parsed config object (after environment overrides) or throws a ConfigError naming each bad key. */
export function validateConfig(raw: unknown, source = 'config', env: NodeJS.ProcessEnv = {}): Config {
  const problems: string[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(source, ['the file must be a YAML mapping']);
  const copy = structuredClone(raw) as Record<string, unknown>;
  applyEnvOverrides(copy, env, problems);
  const result = configSchema.safeParse(copy);
  if (!result.success) problems.push(...result.error.issues.map(describeIssue));
  if (problems.length > 0) throw new ConfigError(source, problems);
  return result.data!;
}

export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read the file: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  return validateConfig(raw, file, env);
}

let cached: Config | undefined;

/** The deployment config: temporal.yaml (or $MARQUEE_CONFIG) with MARQUEE_* overrides, loaded once. */
export function loadConfig(): Config {
  if (!cached) cached = loadConfigFile(process.env.MARQUEE_CONFIG ?? path.join(projectRoot, 'temporal.yaml'));
  return cached;
}

/** Where local state lives (.marquee/ in the repository unless MARQUEE_HOME says otherwise). */
export function stateDir(): string {
  return process.env.MARQUEE_HOME ?? path.join(projectRoot, '.marquee');
}
