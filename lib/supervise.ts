/**
 * Keeps a set of child processes running, the way a container restart policy would: a child that
 * exits while the supervisor runs is started again after a backoff (doubling up to a cap, back to
 * the start once a run has lasted a while), and one child's death never stops the others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface SuperviseOptions {
  /** First restart delay; doubles on each quick crash. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run at least this long counts as healthy: the next crash restarts after initialBackoffMs again. */
  resetAfterMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  graceMs?: number;
  /** Where the supervisor's own lines go (children's output is passed to onOutput). */
  log?: (name: string, line: string) => void;
  onOutput?: (name: string, stream: 'stdout' | 'stderr', line: string) => void;
}

export interface ChildStatus {
  name: string;
  pid: number | undefined;
  running: boolean;
  restarts: number;
  startedAt: number | undefined;
  /** Stopped by hold() and kept down until release(). */
  held: boolean;
  lastExit?: { code: number | null; signal: NodeJS.Signals | null; at: number };
}

interface Entry {
  spec: ChildSpec;
  child?: ChildProcess;
  status: ChildStatus;
  backoffMs: number;
  timer?: NodeJS.Timeout;
  exited?: Promise<void>;
  held?: boolean;
}

/** Events: 'start' (name, pid), 'exit' (name, code, signal), 'restart' (name, delayMs). */
export class Supervisor extends EventEmitter {
  private readonly entries = new Map<string, Entry>();
  private stopping = false;
  private readonly o: Required<Omit<SuperviseOptions, 'onOutput'>> & Pick<SuperviseOptions, 'onOutput'>;

  constructor(specs: ChildSpec[], opts: SuperviseOptions = {}) {
    super();
    this.o = {
      initialBackoffMs: opts.initialBackoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 10_000,
      resetAfterMs: opts.resetAfterMs ?? 30_000,
      graceMs: opts.graceMs ?? 20_000,
      log: opts.log ?? ((name, line) => console.error(`${name.padEnd(9)}| ${line}`)),
      onOutput: opts.onOutput,
    };
    for (const spec of specs) {
      this.entries.set(spec.name, { spec, backoffMs: this.o.initialBackoffMs, status: { name: spec.name, pid: undefined, running: false, restarts: 0, startedAt: undefined, held: false } });
    }
  }

  start(): void {
    for (const e of this.entries.values()) this.launch(e);
  }

  status(): ChildStatus[] {
    return [...this.entries.values()].map((e) => ({ ...e.status }));
  }

  /**
   * Stops one child (signal, SIGKILL after graceMs) and keeps it down until release(name): to
   * see what the others do while a service stays down, or to work on it without a restart racing you.
   */
  async hold(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const e = this.entry(name);
    e.held = true;
    e.status.held = true;
    clearTimeout(e.timer);
    if (!e.status.running) return;
    this.o.log(name, `held: stopping it (${signal}) and not restarting it until released`);
    e.child?.kill(signal);
    const kill = setTimeout(() => { if (e.status.running) e.child?.kill('SIGKILL'); }, this.o.graceMs);
    try {
      await e.exited;
    } finally {
      clearTimeout(kill);
    }
  }

  /** Starts a held child again (at once, with a fresh backoff). */
  release(name: string): void {
    const e = this.entry(name);
    if (!e.held) return;
    e.held = false;
    e.status.held = false;
    e.backoffMs = this.o.initialBackoffMs;
    if (!e.status.running && !this.stopping) {
      this.o.log(name, 'released: starting it again');
      this.launch(e);
    }
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`no such child: ${name} (children: ${[...this.entries.keys()].join(', ')})`);
    return e;
  }

  /** SIGTERM to every child (they finish what they hold), SIGKILL after graceMs; resolves when all have exited. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.timer);
      if (e.status.running) e.child?.kill(signal);
    }
    const all = Promise.all([...this.entries.values()].map((e) => (e.status.running ? e.exited : undefined)));
    const kill = setTimeout(() => {
      for (const e of this.entries.values()) {
        if (e.status.running) {
          this.o.log(e.spec.name, `did not stop within ${this.o.graceMs / 1000} s; killing it`);
          e.child?.kill('SIGKILL');
        }
      }
    }, this.o.graceMs);
    try {
      await all;
    } finally {
      clearTimeout(kill);
    }
  }

  private launch(e: Entry): void {
    const { spec } = e;
    const child = spawn(spec.command, spec.args, { cwd: spec.cwd, env: spec.env, stdio: ['ignore', 'pipe', 'pipe'] });
    e.child = child;
    e.status.pid = child.pid;
    e.status.running = true;
    e.status.startedAt = Date.now();
    this.emit('start', spec.name, child.pid);
    for (const stream of ['stdout', 'stderr'] as const) {
      let rest = '';
      child[stream]!.on('data', (chunk: Buffer) => {
        const lines = (rest + chunk.toString()).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line) this.o.onOutput?.(spec.name, stream, line);
      });
    }
    e.exited = new Promise<void>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (!e.status.running) return resolve();
        e.status.running = false;
        const ranMs = Date.now() - (e.status.startedAt ?? Date.now());
        e.status.lastExit = { code, signal, at: Date.now() };
        this.emit('exit', spec.name, code, signal);
        resolve();
        if (this.stopping) return;
        if (e.held) {
          this.o.log(spec.name, `exited (${signal ?? `code ${code}`}) while held; not restarting it`);
          return;
        }
        if (ranMs >= this.o.resetAfterMs) e.backoffMs = this.o.initialBackoffMs;
        const delay = e.backoffMs;
        e.backoffMs = Math.min(e.backoffMs * 2, this.o.maxBackoffMs);
        e.status.restarts++;
        this.o.log(spec.name, `exited (${signal ?? `code ${code}`}) after ${(ranMs / 1000).toFixed(1)} s; restarting in ${(delay / 1000).toFixed(1)} s (restart ${e.status.restarts}); the others keep running`);
        this.emit('restart', spec.name, delay);
        e.timer = setTimeout(() => { if (!this.stopping) this.launch(e); }, delay);
      };
      child.once('exit', done);
      // A command that cannot be spawned at all is an exit too (retried with the same backoff).
      child.once('error', (err) => {
        this.o.log(spec.name, `could not start: ${err.message}`);
        done(null, null);
      });
    });
  }
}
