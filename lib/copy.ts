import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/** Escapes one value for COPY's text format; null becomes \N. */
export function copyField(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return '\\N';
  if (typeof value === 'number') return String(value);
  let needs = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 92 || c === 9 || c === 10 || c === 13) { needs = true; break; }
  }
  if (!needs) return value;
  return value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/**
 * A Postgres array literal: text elements quoted (so ids with commas or braces survive), numbers
 * bare, null as NULL.
 */
export function arrayLiteral(items: readonly (string | number | null)[]): string {
  let out = '{';
  for (let i = 0; i < items.length; i++) {
    if (i) out += ',';
    const v = items[i];
    if (v === null) out += 'NULL';
    else if (typeof v === 'number') out += String(v);
    // Most text holds neither a quote nor a backslash: two scans cost less than the regex.
    else out += '"' + (v.indexOf('"') < 0 && v.indexOf('\\') < 0 ? v : v.replace(/[\\"]/g, '\\$&')) + '"';
  }
  return out + '}';
}

/** Streams rows into `COPY <table> (<columns>) FROM STDIN` on the given client. */
export async function copyRows(client: pg.PoolClient | pg.Client, table: string, columns: string[], rows: (string | number | null)[][]): Promise<void> {
  if (rows.length === 0) return;
  const stream = client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`));
  const chunkRows = 2000;
  async function* chunks() {
    for (let i = 0; i < rows.length; i += chunkRows) {
      let text = '';
      const end = Math.min(rows.length, i + chunkRows);
      for (let r = i; r < end; r++) text += rows[r].map(copyField).join('\t') + '\n';
      yield Buffer.from(text, 'utf8');
    }
  }
  await pipeline(Readable.from(chunks()), stream);
}
