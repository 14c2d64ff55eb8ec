import { loadConfig, type Config } from '../lib/config.ts';
import { createPool } from '../lib/db.ts';
import { gatewayAdmin } from '../lib/gateway-client.ts';
import { buildOrReuse, deployToSlot, presentReplicas, remoteReplicasUnder, removeReplicas, runningReplicas, unnamedReplicaText } from '../lib/runtime/deploy.ts';
import { chooseRuntime, type Slot, type SlotRuntime } from '../lib/runtime/index.ts';
import { localReplicaIndex } from '../lib/runtime/replicas.ts';
import { MAX_REPLICAS, slotFingerprint, slotUrl } from '../lib/runtime/slots.ts';
import { namedReplicas, replicasPatch, type RoutingPatch, type RoutingState } from '../lib/routing.ts';
import { applyChange } from '../services/gateway/state.ts';

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
 * healthy: warm (vectors and neighbour lists loaded) unless `warm` is false. With `replicas`, runs
 * that many copies (replica k on the slot's port + 100·k), names them in the gateway's routing
 * state, then removes any beyond (unnamed first, so no user is sent to one being stopped); without
 * it, as many replicas as run now are redeployed, so that a new version never leaves an old one
 * running behind the gateway. With `strict` (the command), throws when the replicas run but the
 * gateway would not name them; otherwise (`marquee start`, before its gateway runs) says so.
 */
export async function deploy(slot: Slot, version: string, model: string, opts: { warm?: boolean; runtime?: SlotRuntime; replicas?: number; strict?: boolean } = {}): Promise<string> {
  const cfg = loadConfig();
  const runtime = opts.runtime ?? await chooseRuntime(cfg);
  const image = await buildOrReuse(runtime, { version, model });
  const before = await runningReplicas(runtime, slot);
  const n = opts.replicas ?? Math.max(1, before);
  const urls: string[] = [];
  // One after the other: starting N warm-ups at once would only make each slower on a small machine.
  for (let k = 0; k < n; k++) urls.push((await deployToSlot(cfg, runtime, { slot, version, model, image, warm: opts.warm, replica: k })).url);
  const where = `${slot} runs ${version} (${model}) at ${urls.join(', ')} as ${image.runtime === 'docker' ? image.image : `local process${n > 1 ? 'es' : ''}`}`;
  const routed = n === 1 && before <= 1 && opts.replicas === undefined ? undefined : await routeReplicas(cfg, slot, version, urls);
  if (routed && !routed.ok && opts.strict) throw new Error(`${where}\n${routed.text}`);
  const removed = await removeReplicas(runtime, slot, n);
  const gone = removed.length ? `\nremoved ${replicasWord(removed.length)} ${removed.join(', ')}` : '';
  return routed ? `${where}\n${routed.text}${gone}` : `${where}${gone}`;
}

/** Names a slot's replicas in the gateway's routing state (shared by every gateway through Postgres). */
async function routeReplicas(cfg: Config, slot: Slot, version: string, urls: string[]): Promise<{ ok: boolean; text: string }> {
  const gateway = gatewayAdmin(cfg);
  const replicas = urls.slice(1);
  try {
    const current = await gateway.get('marquee deploy');
    if (slot === 'nightly' && current.nightlyUrl !== slotUrl(cfg, 'nightly')) {
      return { ok: true, text: `the gateway does not route to ${slotUrl(cfg, 'nightly')} as nightly now: its replicas are not named (a release names nightly)` };
    }
    if (slot === 'main' && current.mainUrl !== slotUrl(cfg, 'main')) {
      return { ok: true, text: `the gateway routes main to ${current.mainUrl}, not ${slotUrl(cfg, 'main')}: its replicas are not named` };
    }
    // Other machines' replicas are theirs to replace: under a new version only those already on it stay named.
    const remote = await remoteReplicasUnder(current, cfg, slot, version);
    const named = [...replicas, ...remote.keep];
    const r = await gateway.put(replicasPatch(slot, named, version), 'marquee deploy');
    const elsewhere = remote.keep.length ? ` here and ${remote.keep.length} on ${remote.keep.length === 1 ? 'another machine' : 'other machines'}` : '';
    const unnamed = remote.unnamed.map((r) => `\n${unnamedReplicaText(slot, r, version)}`).join('');
    return { ok: true, text: `gateway: ${slot} spread over ${urls.length} ${replicasWord(urls.length)}${elsewhere}${r.changed ? '' : ' (unchanged)'}${unnamed}` };
  } catch (err) {
    return { ok: false, text: `the gateway's routing state was not updated (${(err as Error).message}); run the same command again once the gateway runs` };
  }
}

/**
 * Takes the slot's local replicas (URLs of this machine's slot ports) out of the routing state
 * before they are stopped; replicas named on other machines stay. Main's first URL stays (main
 * always has one; the gateway answers main's users from its popular list while nothing runs there).
 * Through the gateway's admin API; when no gateway answers, in Postgres directly (the row every
 * gateway reads, with the same change log): taking names out needs none of the health checks the
 * API makes for new ones, and a gateway that runs elsewhere, or starts later, reads the row.
 */
async function unrouteReplicas(cfg: Config, slot: Slot): Promise<{ ok: boolean; text?: string }> {
  const gateway = gatewayAdmin(cfg);
  try {
    const { patch, removed } = withoutLocalReplicas(cfg, slot, await gateway.get('marquee undeploy'));
    if (removed === 0) return { ok: true };
    const r = await gateway.put(patch, 'marquee undeploy');
    return { ok: true, text: `gateway: ${unnamedText(slot, removed)}${r.changed ? '' : ' (unchanged)'}` };
  } catch (err) {
    if (gatewayUnreachable(err)) return unrouteInPostgres(cfg, slot, (err as Error).message);
    return { ok: false, text: `the gateway's routing state was not updated (${(err as Error).message}); run \`marquee undeploy ${slot}\` again` };
  }
}

/** The patch that takes this machine's replicas of `slot` out of `state`, and how many that is. */
function withoutLocalReplicas(cfg: Config, slot: Slot, state: Pick<RoutingState, 'mainReplicas' | 'nightlyReplicas'>): { patch: RoutingPatch; removed: number } {
  const named = namedReplicas(state, slot);
  const keep = named.filter((u) => localReplicaIndex(cfg, slot, u) === undefined);
  return { patch: replicasPatch(slot, keep), removed: named.length - keep.length };
}

const replicasWord = (n: number) => (n === 1 ? 'replica' : 'replicas');
const unnamedText = (slot: Slot, n: number) => `${n} ${replicasWord(n)} of ${slot} unnamed`;

/** True when no gateway answered at all (refused, reset, timed out), as opposed to one that answered with an error. */
function gatewayUnreachable(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return err instanceof TypeError || name === 'TimeoutError' || name === 'AbortError';
}

async function unrouteInPostgres(cfg: Config, slot: Slot, why: string): Promise<{ ok: boolean; text?: string }> {
  const pool = createPool(cfg, { max: 1 });
  try {
    let removed = 0;
    // The patch is made from the locked row, so a change another gateway made meanwhile is kept.
    const r = await applyChange(pool, (before) => {
      const change = withoutLocalReplicas(cfg, slot, before);
      removed = change.removed;
      return change.patch;
    }, 'marquee undeploy (gateway down)', async () => undefined);
    if (!r.ok) return { ok: false, text: `no gateway answered (${why}) and the routing state in Postgres could not be updated either (${r.reason}); run \`marquee undeploy ${slot}\` again` };
    if (removed === 0) return { ok: true };
    return { ok: true, text: `no gateway answered (${why}): ${unnamedText(slot, removed)} in the routing state in Postgres, which every gateway reads (each second, and when it starts)` };
  } catch (err) {
    return { ok: false, text: `no gateway answered (${why}) and Postgres could not be reached either (${(err as Error).message}): the routing state still names replicas of ${slot} that no longer run (the gateway's health checks skip them); run \`marquee undeploy ${slot}\` again` };
  } finally {
    await pool.end();
  }
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
    console.error('usage: marquee deploy main|nightly [--model models/<spec>.json] [--version <label>] [--replicas N]');
    return 2;
  }
  let replicas: number | undefined;
  if (rest.includes('--replicas')) {
    const text = opt('replicas');
    replicas = Number(text);
    if (!text || !Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) {
      console.error(`marquee deploy: --replicas must be an integer from 1 to ${MAX_REPLICAS}, got "${text ?? ''}"`);
      return 2;
    }
  }
  const fallback = slot === 'main' ? await currentMainModel() : undefined;
  const model = opt('model') ?? fallback?.model;
  if (!model) { console.error('marquee deploy nightly: --model is required'); return 2; }
  const version = opt('version') ?? (opt('model') ? model.replace(/^.*\//, '').replace(/\.json$/, '') : fallback!.version);
  try {
    console.log(await deploy(slot, version, model, { replicas, strict: true }));
  } catch (err) {
    console.error(`marquee deploy: ${(err as Error).message}`);
    return 1;
  }
  return 0;
}

export async function undeployCommand(args: string[]): Promise<number> {
  const slot = args[0];
  if (slot !== 'main' && slot !== 'nightly') { console.error('usage: marquee undeploy main|nightly'); return 2; }
  const cfg = loadConfig();
  const runtime = await chooseRuntime(cfg);
  const present = await presentReplicas(runtime, slot);
  if (present.length === 0) {
    // Names left by an undeploy that could not reach the gateway are taken out now; a gateway
    // that does not answer here is no error (nothing runs, and maybe nothing is named).
    const late = await unrouteReplicas(cfg, slot);
    console.log(`nothing runs in ${slot}${late.ok && late.text ? `; ${late.text}` : ''}`);
    return 0;
  }
  // Unnamed before they stop: the gateways then send no user to a replica on its way out.
  const unrouted: { ok: boolean; text?: string } = present.some((r) => r.replica > 0) ? await unrouteReplicas(cfg, slot) : { ok: true };
  const removed = (await removeReplicas(runtime, slot)).length;
  console.log(`${slot} removed (${removed} ${replicasWord(removed)})`);
  if (unrouted.text) (unrouted.ok ? console.log : console.error)(unrouted.text);
  return unrouted.ok ? 0 : 1;
}
