/**
 * Option parsing shared by the `marquee` subcommands: strict `--name value` and `--flag` (node's
 * parseArgs), so an unknown option or a missing value is an error that names it, never a silent
 * default. A UsageError makes the command print its usage and exit 2.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {}

export type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

export function parseOptions<O extends OptionSpec>(args: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Runs a command body; a UsageError prints its message and the usage lines and returns 2. */
export async function withUsage(usage: string | readonly string[], fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const lines = typeof usage === 'string' ? [usage] : usage;
    const shown = lines.length === 1 ? ` marquee ${lines[0]}` : lines.map((u) => `\n  marquee ${u}`).join('');
    console.error(`${err.message}\nusage:${shown}`);
    return 2;
  }
}
