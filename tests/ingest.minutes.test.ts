import { describe, expect, it } from 'vitest';
import { minuteBits } from '../lib/ingest/batch.ts';
import { Rng } from '../lib/random.ts';

/** Postgres' reading of varbit hex text: four bits per digit, the first bit the digit's highest. */
function bitsOfHex(text: string): string {
  expect(text[0]).toBe('x');
  return [...text.slice(1)].map((d) => parseInt(d, 16).toString(2).padStart(4, '0')).join('');
}

describe('minuteBits', () => {
  it('sets bit i for each minute i seen, repeats allowed, padded with zeros to whole hex digits', () => {
    expect(minuteBits([0, 3, 4, 11], 11)).toBe('x981');
    expect(minuteBits([0], 0)).toBe('x8');
    expect(minuteBits([4, 4, 4], 4)).toBe('x08');
    const rng = new Rng(17);
    for (let round = 0; round < 500; round++) {
      const maxMinute = Math.floor(rng.next() * 400);
      const minutes = Array.from({ length: 1 + Math.floor(rng.next() * 30) }, () => Math.floor(rng.next() * maxMinute));
      minutes.push(maxMinute);
      const expected = Array.from({ length: maxMinute + 1 }, (_, i) => (minutes.includes(i) ? '1' : '0')).join('');
      const bits = bitsOfHex(minuteBits(minutes, maxMinute));
      expect(bits.length % 4).toBe(0);
      expect(bits.length - expected.length).toBeLessThan(4);
      expect(bits).toBe(expected.padEnd(bits.length, '0'));
    }
  });
});
