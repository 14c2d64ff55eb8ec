import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChromaClient } from '../lib/chroma.ts';
import { loadConfig } from '../lib/config.ts';
import { requireServer } from './support/servers.ts';

const cfg = loadConfig();
const url = new URL(cfg.chroma.url);
const client = createChromaClient(cfg);
// Unique per run so parallel or aborted runs never see each other's vectors.
const name = `test-nn-${process.pid}-${Date.now()}`;

// Explicit 4-d vectors: the test must never download an embedding model (no network for that here).
const movies: Record<string, number[]> = {
  'drama-a': [1, 0, 0, 0],
  'drama-b': [0.9, 0.1, 0, 0],
  'comedy-a': [0, 1, 0, 0],
  'horror-a': [0, 0, 1, 0],
  'mixed': [0.5, 0.5, 0, 0],
};

describe('chroma', () => {
  beforeAll(async () => {
    await requireServer('chroma', Number(url.port), url.hostname);
  });

  afterAll(async () => {
    await client.deleteCollection({ name }).catch(() => undefined);
  });

  it('answers nearest-neighbour queries over explicit embeddings, then deletes the collection', async () => {
    // embeddingFunction null: no default embedder is configured or loaded, vectors come from us.
    const collection = await client.createCollection({ name, embeddingFunction: null, configuration: { hnsw: { space: 'l2' } } });
    const ids = Object.keys(movies);
    await collection.add({ ids, embeddings: ids.map((id) => movies[id]), metadatas: ids.map((id) => ({ genre: id.split('-')[0] })) });
    expect(await collection.count()).toBe(ids.length);

    const res = await collection.query({ queryEmbeddings: [[0.92, 0.08, 0, 0], [0, 0.1, 0.9, 0]], nResults: 3, include: ['distances', 'metadatas'] });
    // Query 1 lies near drama-b, a little further from drama-a, far from mixed.
    expect(res.ids[0]).toEqual(['drama-b', 'drama-a', 'mixed']);
    expect(res.ids[1][0]).toBe('horror-a');
    const d = res.distances[0].map(Number);
    expect(d[0]).toBeLessThan(d[1]);
    expect(d[1]).toBeLessThan(d[2]);
    // l2 space reports squared Euclidean distance: (0.92-0.9)^2 + (0.08-0.1)^2 = 0.0008, drama-a 0.0128.
    expect(d[0]).toBeCloseTo(0.0008, 4);
    expect(d[1]).toBeCloseTo(0.0128, 4);
    expect(res.metadatas[1][0]).toEqual({ genre: 'horror' });

    // A filter narrows the candidates before ranking.
    const comedies = await collection.query({ queryEmbeddings: [[1, 0, 0, 0]], nResults: 2, where: { genre: 'comedy' } });
    expect(comedies.ids[0]).toEqual(['comedy-a']);

    await client.deleteCollection({ name });
    const names = (await client.listCollections()).map((c) => c.name);
    expect(names).not.toContain(name);
  });
});
