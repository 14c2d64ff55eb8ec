/**
 * The `marquee` subcommands refuse bad options before they touch any server: an unknown option,
 * a missing value or a bad field exits 2 with a message that names it and the usage.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseOptions, UsageError } from '../cli/args.ts';
import { evalOfflineCommand } from '../cli/eval.ts';
import { abortCommand, releaseCommand, statusCommand } from '../cli/release.ts';

async function refused(run: Promise<number>): Promise<string> {
  const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    expect(await run).toBe(2);
    return err.mock.calls.map((c) => c.join(' ')).join('\n');
  } finally {
    err.mockRestore();
  }
}

afterEach(() => vi.restoreAllMocks());

describe('marquee options', () => {
  it('parses --name value, --flag and positionals strictly', () => {
    const { values, positionals } = parseOptions(['v2', '--model', 'models/x.json', '--wait'], { model: { type: 'string' }, wait: { type: 'boolean' } });
    expect(values).toEqual({ model: 'models/x.json', wait: true });
    expect(positionals).toEqual(['v2']);
    expect(() => parseOptions(['--modle', 'x'], { model: { type: 'string' } })).toThrow(UsageError);
    expect(() => parseOptions(['--model'], { model: { type: 'string' } })).toThrow(/--model/);
    expect(() => parseOptions(['extra'], {}, false)).toThrow(UsageError);
  });

  it('release: a bad field, an unknown option or a missing model is refused with the usage', async () => {
    expect(await refused(releaseCommand(['v2', '--model', 'models/taste-v1.json', '--percent', '80']))).toMatch(/percent[\s\S]*usage: marquee release <version>/);
    expect(await refused(releaseCommand(['v2', '--model', 'models/taste-v1.json', '--precent', '20']))).toMatch(/--precent/);
    expect(await refused(releaseCommand(['v2']))).toMatch(/model/);
    expect(await refused(releaseCommand(['bad version!', '--model', 'models/taste-v1.json']))).toMatch(/version/);
    expect(await refused(releaseCommand(['v2', 'v3', '--model', 'models/taste-v1.json']))).toMatch(/one version/);
    expect(await refused(releaseCommand(['v2', '--model', 'models/taste-v1.json', '--steps', '20,5']))).toMatch(/steps: must be 1 to 5 increasing integer percents[\s\S]*\(got \[20,5\]\)/);
    expect(await refused(releaseCommand(['v2', '--model', 'models/taste-v1.json', '--steps', '5,x']))).toMatch(/steps: .*\(got \[5,"x"\]\)/);
    expect(await refused(releaseCommand(['v2', '--model', 'models/taste-v1.json', '--steps', '5,20', '--percent', '5']))).toMatch(/steps: give either percent \(one step\) or steps, not both/);
  });

  it('abort, status and eval offline refuse what they do not know', async () => {
    expect(await refused(abortCommand(['--reason', 'x']))).toMatch(/give one release version[\s\S]*marquee abort <version>/);
    expect(await refused(abortCommand(['v2', '--why', 'x'], 'promote'))).toMatch(/--why[\s\S]*marquee promote <version>/);
    expect(await refused(statusCommand(['--verbose']))).toMatch(/--verbose/);
    expect(await refused(evalOfflineCommand(['--against', 'models/seed-baseline.json']))).toMatch(/--model is required/);
  });
});
