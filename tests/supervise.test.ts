/** The supervisor of `npm start` with real child processes: restarts with backoff, others untouched, graceful stop. */
import { afterEach, describe, expect, it } from 'vitest';
import { Supervisor, type ChildSpec } from '../lib/supervise.ts';

const node = (name: string, code: string): ChildSpec => ({ name, command: process.execPath, args: ['-e', code] });
const steady = node('steady', "process.on('SIGTERM', () => { console.log('graceful stop'); process.exit(0); }); setInterval(() => {}, 1000); console.log('up');");
const crasher = node('crasher', "console.log('up, about to crash'); process.exit(3);");
const stubborn = node('stubborn', "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); setInterval(() => {}, 1000); console.log('up');");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let running: Supervisor | undefined;
afterEach(async () => { await running?.stop('SIGKILL'); running = undefined; });

function supervise(specs: ChildSpec[], opts: ConstructorParameters<typeof Supervisor>[1] = {}) {
  const logs: string[] = [];
  const output: string[] = [];
  const delays: number[] = [];
  const s = new Supervisor(specs, { initialBackoffMs: 50, maxBackoffMs: 400, resetAfterMs: 60_000, graceMs: 1000, ...opts, log: (n, l) => logs.push(`${n}: ${l}`), onOutput: (n, _s, l) => output.push(`${n}: ${l}`) });
  s.on('restart', (name: string, delay: number) => { if (name === 'crasher') delays.push(delay); });
  running = s;
  s.start();
  return { s, logs, output, delays };
}

describe('Supervisor', () => {
  it('restarts a crashing child with a doubling backoff up to the cap, and never stops the others', async () => {
    const { s, logs, delays } = supervise([steady, crasher]);
    await until('steady up', () => s.status().find((c) => c.name === 'steady')!.running);
    const steadyPid = s.status().find((c) => c.name === 'steady')!.pid;
    await until('five restarts of crasher', () => s.status().find((c) => c.name === 'crasher')!.restarts >= 5);
    expect(delays.slice(0, 5)).toEqual([50, 100, 200, 400, 400]);
    const st = s.status().find((c) => c.name === 'steady')!;
    expect(st).toMatchObject({ running: true, pid: steadyPid, restarts: 0 });
    expect(logs.find((l) => l.startsWith('crasher: exited (code 3)'))).toMatch(/restarting in 0\.1 s \(restart 1\)/);
    expect(logs.some((l) => /the others keep running/.test(l))).toBe(true);
  });

  it('kill -9 of a child brings it back with a new pid', async () => {
    const { s, logs } = supervise([steady]);
    await until('steady up', () => s.status()[0].running);
    const first = s.status()[0].pid!;
    process.kill(first, 'SIGKILL');
    await until('a new steady', () => s.status()[0].running && s.status()[0].pid !== first);
    expect(s.status()[0]).toMatchObject({ restarts: 1, lastExit: { signal: 'SIGKILL' } });
    expect(logs.join('\n')).toMatch(/steady: exited \(SIGKILL\)/);
  });

  it('stop() sends SIGTERM, waits for a graceful exit, and restarts nothing afterwards', async () => {
    const { s, output } = supervise([steady, crasher], { initialBackoffMs: 200 });
    await until('steady up', () => output.includes('steady: up'));
    await s.stop();
    expect(output).toContain('steady: graceful stop');
    expect(s.status().every((c) => !c.running)).toBe(true);
    const restarts = s.status().map((c) => c.restarts);
    await sleep(500);
    expect(s.status().map((c) => c.restarts)).toEqual(restarts);
    expect(s.status().every((c) => !c.running)).toBe(true);
  });

  it('a child that ignores SIGTERM is killed after the grace period', async () => {
    const { s, logs, output } = supervise([stubborn], { graceMs: 300 });
    await until('stubborn up', () => output.includes('stubborn: up'));
    await s.stop();
    expect(output).toContain('stubborn: ignoring SIGTERM');
    expect(logs.join('\n')).toMatch(/stubborn: did not stop within 0\.3 s; killing it/);
    expect(s.status()[0]).toMatchObject({ running: false, lastExit: { signal: 'SIGKILL' } });
  });

  it('hold() stops one child and keeps it down while the others run; release() starts it again', async () => {
    const { s, output, logs } = supervise([steady, node('other', "process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000); console.log('up');")]);
    await until('both up', () => output.includes('steady: up') && output.includes('other: up'));
    const otherPid = s.status().find((c) => c.name === 'other')!.pid;
    await s.hold('steady');
    // Its last line can arrive just after the exit event.
    await until('its graceful stop', () => output.includes('steady: graceful stop'));
    await sleep(300);
    expect(s.status().find((c) => c.name === 'steady')).toMatchObject({ running: false, held: true, restarts: 0 });
    expect(s.status().find((c) => c.name === 'other')).toMatchObject({ running: true, pid: otherPid });
    expect(logs.join('\n')).toMatch(/steady: exited \(code 0\) while held; not restarting it/);
    s.release('steady');
    await until('steady back', () => s.status().find((c) => c.name === 'steady')!.running);
    expect(s.status().find((c) => c.name === 'steady')!.held).toBe(false);
    expect(() => s.release('nope')).toThrow(/no such child: nope \(children: steady, other\)/);
  });

  it('a command that cannot start is retried, not fatal', async () => {
    const { s, logs } = supervise([{ name: 'missing', command: '/nonexistent/binary', args: [] }]);
    await until('two attempts', () => s.status()[0].restarts >= 2);
    expect(logs.join('\n')).toMatch(/missing: could not start: spawn \/nonexistent\/binary ENOENT/);
  });
});
