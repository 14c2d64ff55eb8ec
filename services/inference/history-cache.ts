/**
 * Users' histories (readHistory with no asOf) held in memory, so that a request for a returning
 * user costs no Postgres round trip. Kept exact by Postgres itself: migration 007's triggers send
 * the users whose watches, ratings or watched movies' runtimes change on channel marquee_history
 * at commit, and their entries are dropped when the notice arrives. The only staleness is that
 * delivery (commit to notice, ~1 ms on loopback): an answer may miss a change committed less
 * than that before the request. While the listening connection is down nothing is kept (every
 * request reads Postgres), and everything is dropped when it comes back, since notices may have
 * been missed meanwhile.
 *
 * It also holds the ids of every user with any history (read once after LISTEN, then grown by the
 * notices), so that a user who has none, a first visit, needs no read either; and it starts warm:
 * after LISTEN the histories of the most recently active users are read in bulk (a new slot's
 * first minutes would otherwise read Postgres for nearly every request).
 */
import pg from 'pg';
import type { HistoryEntry } from '../../lib/models/rank.ts';

export const HISTORY_CHANNEL = 'marquee_history';
const REQUIRED_TRIGGERS = ['watches', 'ratings'].flatMap((t) => ['insert', 'update', 'delete', 'truncate'].map((op) => `${t}_history_${op}`))
  .concat(['insert', 'update', 'delete', 'truncate'].map((op) => `movies_runtime_${op}`));
const NO_HISTORY: readonly HistoryEntry[] = Object.freeze([]);

export interface HistoryCacheStats {
  state: 'connecting' | 'listening' | 'down' | 'off';
  /** Histories kept. */
  users: number;
  /** Ids of the users known to have some history (null while they are being read). */
  usersWithHistory: number | null;
  /** Requests answered from memory: a kept history, or none for a user known to have none. */
  hits: number;
  misses: number;
  invalidations: number;
  resets: number;
  /** Histories read in bulk after the last LISTEN. */
  preloaded: number;
  lastError: string | null;
}

/** How to read many histories at once (on the service's pool, never the listening connection, whose notices must not wait). */
export interface HistoryPreload {
  /** The users to read first, most likely to be asked first. */
  users(limit: number): Promise<number[]>;
  read(users: readonly number[]): Promise<Map<number, HistoryEntry[]>>;
}

/** Users per bulk read. */
const PRELOAD_CHUNK = 1000;

interface Loading {
  promise: Promise<HistoryEntry[]>;
  /** A notice for the user arrived while it was being read: the result may be stale, do not keep it. */
  dirty: boolean;
}

export class HistoryCache {
  private readonly entries = new Map<number, readonly HistoryEntry[]>();
  private readonly loading = new Map<number, Loading>();
  /** Every user with some history (a superset: deleted histories stay); null: not known yet. */
  private withHistory: Set<number> | null = null;
  /** Users notified while withHistory is being read, added to it once read. */
  private notifiedWhileReading: Set<number> | null = null;
  /** Users notified while a bulk read runs: their read histories may be stale, not kept. */
  private notifiedWhilePreloading: Set<number> | null = null;
  private client: pg.Client | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  /** Bumped on every reset, so a read begun before one is not kept after it. */
  private epoch = 0;
  readonly stats: HistoryCacheStats;

  /**
   * @param connectionString the database the histories are read from
   * @param maxUsers how many users are kept (least recently asked dropped first); 0 turns the cache off
   */
  constructor(private readonly connectionString: string, readonly maxUsers: number, private readonly preloader: HistoryPreload | null = null, private readonly retryMs = 1000) {
    this.stats = { state: maxUsers > 0 ? 'connecting' : 'off', users: 0, usersWithHistory: null, hits: 0, misses: 0, invalidations: 0, resets: 0, preloaded: 0, lastError: null };
  }

  start(): void {
    if (this.maxUsers > 0) void this.listen();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = null;
    void c?.end().catch(() => undefined);
  }

  /** The user's history when it is known without a read (the request then needs no Postgres at all). */
  peek(userId: number): readonly HistoryEntry[] | undefined {
    if (this.stats.state !== 'listening') return undefined;
    const kept = this.entries.get(userId);
    if (kept !== undefined) {
      this.stats.hits++;
      // Re-inserted to mark it as recently used (a Map iterates in insertion order).
      this.entries.delete(userId);
      this.entries.set(userId, kept);
      return kept;
    }
    if (this.withHistory !== null && !this.withHistory.has(userId)) {
      this.stats.hits++;
      return NO_HISTORY;
    }
    return undefined;
  }

  /**
   * Reads a history that is not kept with `read`, and keeps it unless a notice for the user came
   * meanwhile; requests for a user being read share that read.
   */
  load(userId: number, read: () => Promise<HistoryEntry[]>): Promise<readonly HistoryEntry[]> {
    if (this.stats.state !== 'listening') return read();
    this.stats.misses++;
    const pending = this.loading.get(userId);
    if (pending !== undefined) return pending.promise;
    const epoch = this.epoch;
    const entry: Loading = { promise: read(), dirty: false };
    this.loading.set(userId, entry);
    entry.promise.then((history) => {
      if (this.loading.get(userId) === entry) this.loading.delete(userId);
      if (entry.dirty || epoch !== this.epoch || this.stats.state !== 'listening') return;
      this.entries.set(userId, history);
      if (this.entries.size > this.maxUsers) this.entries.delete(this.entries.keys().next().value!);
      this.stats.users = this.entries.size;
    }, () => {
      if (this.loading.get(userId) === entry) this.loading.delete(userId);
    });
    return entry.promise;
  }

  /** Handles one notice: comma-separated user ids, or '*' for everyone. */
  invalidate(payload: string): void {
    if (payload === '*') {
      // Emptied tables: the users with history stay a superset, only the kept histories go.
      this.dropAll();
      return;
    }
    for (const part of payload.split(',')) {
      const id = Number(part);
      this.stats.invalidations++;
      this.entries.delete(id);
      this.withHistory?.add(id);
      this.notifiedWhileReading?.add(id);
      this.notifiedWhilePreloading?.add(id);
      const pending = this.loading.get(id);
      if (pending !== undefined) {
        pending.dirty = true;
        this.loading.delete(id);
      }
    }
    this.stats.users = this.entries.size;
    if (this.withHistory !== null) this.stats.usersWithHistory = this.withHistory.size;
  }

  /** LISTEN is in effect: keeping may start, from nothing, since notices before it were not heard. */
  listening(): void {
    this.dropAll();
    this.withHistory = null;
    this.notifiedWhileReading = new Set();
    this.stats.usersWithHistory = null;
    this.stats.state = 'listening';
    this.stats.lastError = null;
  }

  /** The users with some history as read after listening() (plus those notified since). */
  usersWithHistoryRead(ids: Iterable<number>): void {
    if (this.stats.state !== 'listening' || this.notifiedWhileReading === null) return;
    const all = new Set(ids);
    for (const id of this.notifiedWhileReading) all.add(id);
    this.withHistory = all;
    this.notifiedWhileReading = null;
    this.stats.usersWithHistory = all.size;
  }

  /** The connection is lost: nothing may be trusted until listening() again. */
  down(reason: string | null): void {
    this.stats.state = 'down';
    if (reason !== null) this.stats.lastError = reason;
    this.dropAll();
    this.withHistory = null;
    this.notifiedWhileReading = null;
    this.stats.usersWithHistory = null;
  }

  /**
   * Reads the histories of the most recently active users in bulk, while nothing resets the cache,
   * keeping those no notice named during their read, until the cache is full.
   */
  async preload(): Promise<void> {
    const p = this.preloader;
    if (p === null || this.stats.state !== 'listening') return;
    const epoch = this.epoch;
    this.stats.preloaded = 0;
    const users = await p.users(this.maxUsers);
    for (let i = 0; i < users.length && this.entries.size < this.maxUsers; i += PRELOAD_CHUNK) {
      if (epoch !== this.epoch) return;
      const chunk = users.slice(i, i + PRELOAD_CHUNK).filter((u) => !this.entries.has(u) && !this.loading.has(u));
      const notified = new Set<number>();
      this.notifiedWhilePreloading = notified;
      let read: Map<number, HistoryEntry[]>;
      try {
        read = await p.read(chunk);
      } finally {
        if (this.notifiedWhilePreloading === notified) this.notifiedWhilePreloading = null;
      }
      if (epoch !== this.epoch || this.stats.state !== 'listening') return;
      for (const [u, history] of read) {
        if (this.entries.size >= this.maxUsers) break;
        if (notified.has(u) || this.entries.has(u) || this.loading.has(u)) continue;
        this.entries.set(u, history);
        this.stats.preloaded++;
      }
      this.stats.users = this.entries.size;
    }
  }

  private dropAll(): void {
    this.epoch++;
    this.stats.resets++;
    this.entries.clear();
    for (const l of this.loading.values()) l.dirty = true;
    this.loading.clear();
    this.stats.users = 0;
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'marquee-inference-history', connectionTimeoutMillis: 5000 });
    this.client = client;
    const lost = (err: Error | null) => {
      if (this.client !== client) return;
      this.client = null;
      this.down(err ? err.message.split('\n')[0] : 'connection closed');
      void client.end().catch(() => undefined);
      if (!this.stopped) {
        this.retry = setTimeout(() => void this.listen(), this.retryMs);
        this.retry.unref();
      }
    };
    client.on('error', (err) => lost(err));
    client.on('end', () => lost(null));
    client.on('notification', (n) => {
      if (n.channel === HISTORY_CHANNEL) this.invalidate(n.payload ?? '*');
    });
    try {
      await client.connect();
      // Without the triggers no notice would ever come and kept histories would go stale.
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = ANY($1) AND tgenabled <> 'D'`, [REQUIRED_TRIGGERS]);
      if (rows[0].n !== REQUIRED_TRIGGERS.length) {
        throw new Error(`the history triggers of migration 007 are missing or disabled (${rows[0].n} of ${REQUIRED_TRIGGERS.length}): histories are read from Postgres on every request`);
      }
      await client.query(`LISTEN ${HISTORY_CHANNEL}`);
      if (this.client !== client) return;
      this.listening();
      const users = await client.query<{ user_id: number }>({ text: 'SELECT user_id FROM watches UNION SELECT user_id FROM ratings', rowMode: 'array' } as pg.QueryConfig);
      if (this.client === client) this.usersWithHistoryRead((users.rows as unknown as [number][]).map((r) => r[0]));
    } catch (err) {
      lost(err as Error);
      return;
    }
    // A failed bulk read only leaves the cache colder: requests read what it did not.
    await this.preload().catch((err: unknown) => { this.stats.lastError = `preload: ${(err as Error).message.split('\n')[0]}`; });
  }
}
