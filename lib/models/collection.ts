/**
 * Reading a vector collection from ChromaDB into memory: all of it, or only the ids not held yet
 * (new movies get vectors incrementally, so the index grows without a full reload).
 */
import type { ChromaClient, Collection } from 'chromadb';
import type { VectorRecord } from './vectors.ts';

const PAGE = 2000;

function toRecords(res: { ids: string[]; embeddings: (number[] | null)[] | null; metadatas: (Record<string, unknown> | null)[] | null }): VectorRecord[] {
  const out: VectorRecord[] = [];
  res.ids.forEach((id, i) => {
    const embedding = res.embeddings?.[i];
    if (!embedding || embedding.length === 0) return;
    const meta = res.metadatas?.[i];
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    // contentMetadata writes -1 for an unknown vote average (Chroma metadata cannot hold null).
    const average = num(meta?.vote_average);
    out.push({ id, embedding, popularity: num(meta?.popularity), voteAverage: average !== null && average >= 0 ? average : null, voteCount: num(meta?.vote_count) });
  });
  return out;
}

export async function openCollection(client: ChromaClient, name: string): Promise<Collection> {
  return client.getCollection({ name });
}

/** Every record with its embedding and popularity, read page by page. */
export async function fetchAllVectors(collection: Collection): Promise<VectorRecord[]> {
  const out: VectorRecord[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const res = await collection.get({ include: ['embeddings', 'metadatas'], limit: PAGE, offset });
    out.push(...toRecords(res as never));
    if (res.ids.length < PAGE) return out;
  }
}

/** All ids in the collection (cheap: no embeddings). */
export async function fetchIds(collection: Collection): Promise<string[]> {
  const out: string[] = [];
  for (let offset = 0; ; offset += 10 * PAGE) {
    const res = await collection.get({ include: [], limit: 10 * PAGE, offset });
    out.push(...res.ids);
    if (res.ids.length < 10 * PAGE) return out;
  }
}

export async function fetchVectors(collection: Collection, ids: readonly string[]): Promise<VectorRecord[]> {
  const out: VectorRecord[] = [];
  for (let i = 0; i < ids.length; i += PAGE) {
    const res = await collection.get({ ids: ids.slice(i, i + PAGE), include: ['embeddings', 'metadatas'] });
    out.push(...toRecords(res as never));
  }
  return out;
}
