/**
 * The ingest's thread module bundled as the services image bundles it (lib/runtime/services.ts),
 * for benchmarks and tests that run IngestThreads from a bundle (IngestThreadsOptions.entry):
 * started from source, each thread first has tsx compile it, which the service never does.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../lib/config.ts';
import { bundleEntry } from '../lib/runtime/image.ts';

export async function ingestThreadBundle(): Promise<URL> {
  // Where the image has it: the bundle finds temporal.yaml one folder up, as lib/config.ts does.
  const file = path.join(projectRoot, 'dist', 'ingest-thread.mjs');
  mkdirSync(path.dirname(file), { recursive: true });
  // Written whole under another name first: a run beside this one may be starting threads from it.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, await bundleEntry('services/ingest/thread.ts'));
  renameSync(tmp, file);
  return pathToFileURL(file);
}
