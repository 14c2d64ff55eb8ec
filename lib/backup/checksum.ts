import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';

/** A pass-through stream that hashes and counts what flows through it (one pass for dump and checksum). */
export class HashCounter extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    cb(null, chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** sha256 and size of a file, streamed; `onProgress` gets the bytes read so far. */
export async function sha256File(file: string, onProgress?: (bytes: number) => void): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
    onProgress?.(bytes);
  }
  return { sha256: hash.digest('hex'), sizeBytes: bytes };
}
