/**
 * Command-line options of the benchmarks: node's parseArgs in strict mode, so a misspelt or
 * unknown flag stops the run with the usage instead of silently measuring the defaults.
 */
import { parseArgs } from 'node:util';

export interface BenchArgs {
  /** A number option; not a finite number at least `min` (an integer when asked) is an error naming the flag. */
  number(name: string, opts?: { min?: number; integer?: boolean }): number;
  string(name: string): string;
  flag(name: string): boolean;
}

/** `options`: a default value for each `--name value` option, `false` for each `--flag`. */
export function benchArgs(usage: string, options: Record<string, string | false>, args = process.argv.slice(2)): BenchArgs {
  const spec = Object.fromEntries(Object.entries(options).map(([k, v]) =>
    [k, v === false ? { type: 'boolean' as const, default: false } : { type: 'string' as const, default: v }]));
  const fail = (message: string): never => {
    console.error(`${message}\nusage: ${usage}`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | undefined> = {};
  try {
    ({ values } = parseArgs({ args, options: spec, strict: true, allowPositionals: false }));
  } catch (err) {
    fail((err as Error).message);
  }
  return {
    number(name, { min = -Infinity, integer = false } = {}) {
      const text = String(values[name]);
      const v = Number(text);
      if (text.trim() === '' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
        fail(`--${name} must be ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` ≥ ${min}` : ''}, got "${text}"`);
      }
      return v;
    },
    string: (name) => String(values[name]),
    flag: (name) => values[name] === true,
  };
}
