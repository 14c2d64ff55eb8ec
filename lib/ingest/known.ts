/**
 * Movie and user ids this process has seen committed to Postgres, so that a batch inserts only the
 * ids that are new instead of sending every id of the batch to `INSERT ... ON CONFLICT DO NOTHING`
 * (which also made two partitions' transactions wait on each other for a movie both had seen).
 * Only a hint about the database: forget() it whenever that may no longer hold (a failed batch, a
 * restore that swapped the database underneath); then the next batch inserts all its ids again.
 */
export class KnownIds {
  private movies = new Set<string>();
  private users = new Set<number>();

  /** Bounds memory: past this many ids the sets start over (a full batch of inserts, no harm). */
  constructor(private readonly limit = 1_000_000) {}

  newMovies(ids: Iterable<string>): string[] {
    const out: string[] = [];
    for (const id of ids) if (!this.movies.has(id)) out.push(id);
    return out;
  }

  newUsers(ids: Iterable<number>): number[] {
    const out: number[] = [];
    for (const id of ids) if (!this.users.has(id)) out.push(id);
    return out;
  }

  /** Call after the COMMIT that stored these ids, never before. */
  remember(movies: readonly string[], users: readonly number[]): void {
    if (this.movies.size + movies.length > this.limit) this.movies = new Set();
    if (this.users.size + users.length > this.limit) this.users = new Set();
    for (const id of movies) this.movies.add(id);
    for (const id of users) this.users.add(id);
  }

  forget(): void {
    this.movies = new Set();
    this.users = new Set();
  }
}
