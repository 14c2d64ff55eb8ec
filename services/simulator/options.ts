/**
 * The simulator's options (see main.ts for what each does): --name value, --name=value, or
 * SIMULATOR_<NAME> from the environment, the command line winning. Strict: an unknown option, a
 * missing value, an unknown world or an option of the other world on the command line is an error.
 */
import { WORLDS } from './replay-world.ts';

export const NAMES = [
  'world', 'seed', 'movies', 'users', 'rate', 'speed', 'duration', 'malformed', 'gateway', 'port', 'topic', 'history',
  'replay-from', 'replay-window', 'user-offset', 'stall', 'herd', 'amplify', 'new-accounts',
] as const;
type Name = (typeof NAMES)[number];
const INVENTED_ONLY: readonly Name[] = ['seed', 'movies', 'users', 'history', 'herd', 'amplify', 'new-accounts'];
const REPLAY_ONLY: readonly Name[] = ['replay-from', 'replay-window', 'user-offset'];

export interface ParsedOptions {
  values: Partial<Record<Name, string>>;
  /** Where each value came from: the command line wins over SIMULATOR_<NAME>. */
  from: Partial<Record<Name, 'argv' | 'env'>>;
}

/** --name value, --name=value, or SIMULATOR_NAME (dashes as _); unknown flags are an error, not a silent default. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): ParsedOptions {
  const values: Partial<Record<Name, string>> = {};
  const from: Partial<Record<Name, 'argv' | 'env'>> = {};
  for (const n of NAMES) {
    const v = env[`SIMULATOR_${n.toUpperCase().replaceAll('-', '_')}`];
    if (v !== undefined && v !== '') { values[n] = v; from[n] = 'env'; }
  }
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !(NAMES as readonly string[]).includes(m[1])) throw new Error(`unknown option ${argv[i]} (options: ${NAMES.map((n) => `--${n}`).join(' ')})`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`option --${m[1]} needs a value`);
    values[m[1] as Name] = value;
    from[m[1] as Name] = 'argv';
  }
  const world = values.world ?? 'invented';
  if (!(WORLDS as readonly string[]).includes(world)) throw new Error(`--world must be one of ${WORLDS.join(', ')}, got "${world}"`);
  // An option of the other world is a mistake on the command line; from the environment (npm start
  // sets SIMULATOR_HISTORY) it is only said and left aside.
  const foreign = [...(world === 'invented' ? REPLAY_ONLY : INVENTED_ONLY)];
  if (world !== 'invented' && values.rate !== undefined && Number(values.rate) !== 0) foreign.push('rate');
  for (const n of foreign) {
    if (values[n] === undefined) continue;
    const what = `--${n} is for the ${world === 'invented' ? 'replay world (--world movielens-100k)' : 'invented world (the replay\'s rate and users come from the data set)'}`;
    if (from[n] === 'argv') throw new Error(`${what}, not --world ${world}`);
    console.log(`simulator: SIMULATOR_${n.toUpperCase().replaceAll('-', '_')}=${values[n]} ignored: ${what}`);
    delete values[n];
    delete from[n];
  }
  return { values, from };
}
