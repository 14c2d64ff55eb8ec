import { loadConfig } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { buildOrReuse, deployToSlot } from '../lib/runtime/deploy.ts';
import { chooseRuntime, type Slot, type SlotRuntime } from '../lib/runtime/index.ts';
import { slotFingerprint } from '../lib/runtime/slots.ts';

/** The version main should run: the last promoted release, else the seed baseline. */
export async function currentMainModel(): Promise<{ version: string; model: string }> {
  const pool = createPool(loadConfig(), { max: 1 });
  try {
    const { rows } = await pool.query(`SELECT id, model_spec FROM releases WHERE decision = 'promoted' ORDER BY ended_at DESC NULLS LAST LIMIT 1`);
    return rows[0] ? { version: rows[0].id, model: rows[0].model_spec } : { version: 'seed-baseline', model: 'models/seed-baseline.json' };
  } finally {
    await pool.end();
  }
}

/**
 * Runs a model version in a slot (building its image when Docker runs) and waits until it is
 * healthy: warm (vectors and neighbour lists loaded) unless `warm` is false.
 */
export async function deploy(slot: Slot, version: string, model: string, opts: { warm?: boolean; runtime?: SlotRuntime } = {}): Promise<string> {
  const cfg = loadConfig();
  const runtime = opts.runtime ?? await chooseRuntime(cfg);
  const image = await buildOrReuse(runtime, { version, model });
  const { url } = await deployToSlot(cfg, runtime, { slot, version, model, image, warm: opts.warm });
  return `${slot} runs ${version} (${model}) at ${url} as ${image.runtime === 'docker' ? image.image : 'a local process'}`;
}

/** Starts main when nothing runs there, so `npm start` always has a model to serve. */
export async function ensureMain(): Promise<string> {
  const cfg = loadConfig();
  const runtime = await chooseRuntime(cfg);
  const current = await runtime.describe('main');
  const { version, model } = await currentMainModel();
  // Kept only when started with the same things (a main for another database would read the wrong one).
  if (current?.running && current.version === version && current.fingerprint === slotFingerprint(cfg, { slot: 'main', version, model, image: current.image })) {
    return `main already runs ${current.version}`;
  }
  // Not warm: on a fresh install the vectors main reads appear only once the catalog (started
  // after this) has fetched the movies; main serves its popular list until then.
  return deploy('main', version, model, { warm: false, runtime });
}

export async function deployCommand(args: string[]): Promise<number> {
  const [slot, ...rest] = args;
  const opt = (name: string) => { const i = rest.indexOf(`--${name}`); return i >= 0 ? rest[i + 1] : undefined; };
  if ((slot !== 'main' && slot !== 'nightly') || (rest.includes('--model') && !opt('model'))) {
    console.error('usage: marquee deploy main|nightly [--model models/<spec>.json] [--version <label>]');
    return 2;
  }
  const fallback = slot === 'main' ? await currentMainModel() : undefined;
  const model = opt('model') ?? fallback?.model;
  if (!model) { console.error('marquee deploy nightly: --model is required'); return 2; }
  const version = opt('version') ?? (opt('model') ? model.replace(/^.*\//, '').replace(/\.json$/, '') : fallback!.version);
  console.log(await deploy(slot, version, model));
  return 0;
}

export async function undeployCommand(args: string[]): Promise<number> {
  const slot = args[0];
  if (slot !== 'main' && slot !== 'nightly') { console.error('usage: marquee undeploy main|nightly'); return 2; }
  const removed = await (await chooseRuntime(loadConfig())).remove(slot);
  console.log(removed ? `${slot} removed` : `nothing runs in ${slot}`);
  return 0;
}
