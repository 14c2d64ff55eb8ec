import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { loadConfig, projectRoot } from '../lib/config.ts';
import { createPool, migrate } from '../lib/db.ts';
import { runServices, services, startUsage } from './services.ts';
import { vectorsCommand } from '../lib/vectors/cli.ts';
import { backupCommand, backupsCommand, restoreCommand, schedulesCommand } from './backup.ts';
import { evalOfflineCommand, evalOnlineCommand, evalSummary, evalUsage } from './eval.ts';
import { movielensCommand, movielensSummary, movielensUsage } from './movielens.ts';
import { datasetsFetchCommand, datasetsSummary, datasetsUsage } from './datasets.ts';
import { abortCommand, releaseCommand, statusCommand } from './release.ts';
import { deployCommand, undeployCommand } from './deploy.ts';
import { reportCommand, reportSummary, reportUsage } from './report.ts';
import { provenanceCommand, provenanceSummary, provenanceUsage, reproduceCommand } from './provenance.ts';

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
    usage: startUsage,
    summary: `run the services (default all: ${services.map((s) => s.name).join(', ')}) until Ctrl-C; --containers: worker, gateway, ingest, catalog as Docker containers`,
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
  {
    name: 'release',
    usage: 'release <version> --model models/<spec>.json [--percent N | --steps 5,20,50] [--bake 12h] [--interval 30m] [--notify a@b,...] [--wait]',
    summary: 'start a CanaryRelease workflow (offline gate, build, deploy nightly, bake, judge, promote or abort)',
    run: (args) => releaseCommand(args),
  },
  {
    name: 'abort',
    usage: 'abort <version> --reason "..."',
    summary: 'abort a release at once: traffic back to main, nightly removed, outcome mailed',
    run: (args) => abortCommand(args),
  },
  {
    name: 'promote',
    usage: 'promote <version> --reason "..."',
    summary: 'end the bake early and promote (only while baking)',
    run: (args) => abortCommand(args, 'promote'),
  },
  {
    name: 'status',
    usage: 'status [<version>] [--json]',
    summary: 'phase, times and live metrics of the release in flight (or the given one), and the routing',
    run: (args) => statusCommand(args),
  },
  { name: 'eval offline', usage: evalUsage.offline, summary: evalSummary.offline, run: (args) => evalOfflineCommand(args) },
  { name: 'eval online', usage: evalUsage.online, summary: evalSummary.online, run: (args) => evalOnlineCommand(args) },
  { name: 'import movielens', usage: movielensUsage, summary: movielensSummary, run: (args) => movielensCommand(args) },
  { name: 'datasets fetch', usage: datasetsUsage, summary: datasetsSummary, run: (args) => datasetsFetchCommand(args) },
  { name: 'backup', usage: 'backup', summary: 'back up the database now (DatabaseBackup workflow), with progress', run: (args) => backupCommand(args) },
  { name: 'backups', usage: 'backups [--all]', summary: 'list backups (--all includes ones removed by retention)', run: (args) => backupsCommand(args) },
  {
    name: 'restore',
    usage: 'restore <backup-id|file> [--force]',
    summary: 'restore a backup into a new database and switch to it (DatabaseRestore); --force while a release bakes',
    run: (args) => restoreCommand(args),
  },
  { name: 'schedules apply', usage: 'schedules apply', summary: 'create or update the Temporal Schedules: marquee-backup (temporal.yaml) and marquee-reconcile', run: (args) => schedulesCommand(args) },
  {
    name: 'deploy',
    usage: 'deploy main|nightly [--model models/<spec>.json] [--version <label>] [--replicas N]',
    summary: 'run a model version in a slot by hand (image build when Docker runs); main defaults to the last promoted release; --replicas N runs N copies (ports +100 each) and tells the gateway to spread the slot over them',
    run: (args) => deployCommand(args),
  },
  { name: 'undeploy', usage: 'undeploy main|nightly', summary: 'remove the slot\'s containers or processes (every replica)', run: (args) => undeployCommand(args) },
  { name: 'provenance', usage: provenanceUsage.provenance, summary: provenanceSummary.provenance, run: (args) => provenanceCommand(args) },
  { name: 'report', usage: reportUsage, summary: reportSummary, run: (args) => reportCommand(args) },
  { name: 'reproduce', usage: provenanceUsage.reproduce, summary: provenanceSummary.reproduce, run: (args) => reproduceCommand(args) },
];
