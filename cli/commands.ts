import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { createPool, migrate } from '../lib/db.ts';
import { runServices, services } from './services.ts';
import { vectorsCommand } from '../lib/vectors/cli.ts';

export interface Command {
  /** One word, or two for grouped commands such as "eval offline". */
  name: string;
  usage: string;
  summary: string;
  run(args: string[]): Promise<number | void>;
}

export const commands: Command[] = [
  {
    name: 'start',
    usage: 'start [service ...]',
    summary: `run the services (default all: ${services.map((s) => s.name).join(', ')}) until Ctrl-C`,
    run: (args) => runServices(args),
  },
  {
    name: 'stack',
    usage: 'stack up|down|status [component ...]',
    summary: 'install, start, stop or check the local servers (Postgres, Kafka, Temporal, ChromaDB, Docker)',
    run: async (args) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'stack', 'cli.ts'), ...args], { stdio: 'inherit' });
      return r.status ?? 1;
    },
  },
  {
    name: 'migrate',
    usage: 'migrate',
    summary: 'apply the database migrations that are not applied yet',
    run: async () => {
      const pool = createPool(loadConfig(), { max: 1 });
      try {
        const applied = await migrate(pool);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
      } finally {
        await pool.end();
      }
    },
  },
  {
    name: 'vectors',
    usage: 'vectors build --kind content|behaviour [--incremental] [--version N]',
    summary: 'compute movie vectors and upsert them into ChromaDB (collection movies_<kind>_v<N>)',
    run: (args) => vectorsCommand(args),
  },
];
