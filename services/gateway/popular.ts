/**
 * The last-resort answer when neither slot can answer in time: a list of popular movies, always in
 * memory so that serving it costs nothing. Sources, best first: what was most watched lately
 * (Postgres, refreshed off the request path), the catalog's popularity, and the ids most often
 * recommended in the last good answers (so a fresh database still gets a sensible list).
 */
import type { Pool } from '../../lib/db.ts';

const SIZE = 20;
const RECENT = 500;

export class PopularList {
  private fromDb: string[] = [];
  private recent: string[][] = [];
  private next = 0;
  private cached?: { at: number; ids: string[] };
  private timer?: NodeJS.Timeout;
  source = 'none';

  constructor(private readonly pool: Pool, private readonly opts: { refreshMs: number; log?: (m: string) => void }) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async refresh(): Promise<void> {
    const client = await this.pool.connect().catch(() => undefined);
    if (!client) return;
    try {
      await client.query("SET statement_timeout = '5s'");
      let { rows } = await client.query<{ id: string }>(
        `SELECT movie_id AS id FROM watches WHERE first_at > now() - interval '7 days'
         GROUP BY movie_id ORDER BY count(*) DESC, movie_id LIMIT ${SIZE}`);
      if (rows.length < SIZE) {
        const more = await client.query<{ id: string }>(`SELECT id FROM movies ORDER BY popularity DESC NULLS LAST, id LIMIT ${SIZE * 2}`);
        const have = new Set(rows.map((r) => r.id));
        rows = rows.concat(more.rows.filter((r) => !have.has(r.id))).slice(0, SIZE);
      }
      if (rows.length > 0) this.fromDb = rows.map((r) => r.id);
    } catch (err) {
      this.opts.log?.(`popular list: refresh failed, keeping the last one: ${(err as Error).message}`);
    } finally {
      await client.query('RESET statement_timeout').catch(() => undefined);
      client.release();
    }
  }

  /** Remembers a good answer from a slot (a ring of the last few hundred). */
  observe(ids: string[]): void {
    if (ids.length === 0) return;
    if (this.recent.length < RECENT) this.recent.push(ids);
    else this.recent[this.next] = ids;
    this.next = (this.next + 1) % RECENT;
  }

  ids(): string[] {
    if (this.fromDb.length > 0) { this.source = 'postgres'; return this.fromDb; }
    const now = Date.now();
    if (this.cached && now - this.cached.at < 5000) return this.cached.ids;
    const score = new Map<string, number>();
    for (const answer of this.recent) answer.forEach((id, rank) => score.set(id, (score.get(id) ?? 0) + (SIZE - rank)));
    const ids = [...score].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, SIZE).map(([id]) => id);
    this.source = ids.length ? 'recent answers' : 'none';
    this.cached = { at: now, ids };
    return ids;
  }
}
