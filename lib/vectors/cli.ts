/**
 * `marquee vectors build --kind content|behaviour [--incremental] [--version N] [--dim K]
 *  [--min-watches N] [--collection NAME]`: the CLI face of buildVectors.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import { createPool } from '../db.ts';
import { buildVectors, type BuildReport } from './build.ts';
import { VECTOR_KINDS, type VectorKind } from './store.ts';

export const vectorsUsage = 'vectors build --kind content|behaviour [--incremental] [--version N] [--dim K] [--min-watches N] [--collection NAME]';

function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got "${text}"`);
  return n;
}

export function describeReport(r: BuildReport): string {
  const skipped = Object.entries(r.skipped).map(([why, n]) => `${n} ${why.replace(/_/g, ' ')}`).join(', ');
  return `${r.collection}: ${r.mode} build wrote ${r.upserted} vectors (dim ${r.dim}), ${r.total} in the collection, in ${(r.ms / 1000).toFixed(1)} s`
    + (skipped ? `; skipped ${skipped}${r.skippedSample.length ? ` (e.g. ${r.skippedSample.slice(0, 3).join(', ')})` : ''}` : '');
}

export async function vectorsCommand(args: string[]): Promise<number> {
  // Registered either as "vectors" (args start with "build") or as "vectors build".
  if (args[0] === 'build') args = args.slice(1);
  else if (args[0] && !args[0].startsWith('-')) {
    console.error(`unknown vectors subcommand "${args[0]}"\nusage: marquee ${vectorsUsage}`);
    return 2;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        kind: { type: 'string' }, incremental: { type: 'boolean', default: false }, version: { type: 'string' },
        dim: { type: 'string' }, 'min-watches': { type: 'string' }, collection: { type: 'string' }, quiet: { type: 'boolean', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\nusage: marquee ${vectorsUsage}`);
    return 2;
  }
  if (!VECTOR_KINDS.includes(values.kind as VectorKind)) {
    console.error(`--kind must be one of ${VECTOR_KINDS.join(', ')}${values.kind ? `, got "${values.kind}"` : ''}\nusage: marquee ${vectorsUsage}`);
    return 2;
  }
  let version: number | undefined, dim: number | undefined, minWatches: number | undefined;
  try {
    version = positiveInt('version', values.version);
    dim = positiveInt('dim', values.dim);
    minWatches = positiveInt('min-watches', values['min-watches']);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const cfg = loadConfig();
  const pool = createPool(cfg, { max: 3, applicationName: 'marquee-vectors' });
  try {
    const report = await buildVectors(cfg, pool, {
      kind: values.kind as VectorKind, version, incremental: values.incremental, dim, minWatches, collection: values.collection,
      log: values.quiet ? undefined : (line) => console.log(`  ${line}`),
    });
    console.log(describeReport(report));
    return 0;
  } catch (err) {
    console.error(`vectors build failed: ${(err as Error).message}`);
    return 1;
  } finally {
    await pool.end();
  }
}
