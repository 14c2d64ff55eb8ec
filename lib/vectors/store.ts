/**
 * The ChromaDB side of the vector job. Collections are named `movies_<kind>_v<version>`, hold one
 * record per movie (id = the movie's slug) with an explicit embedding, and use cosine space. No
 * embedding function is ever attached (embeddingFunction: null), so nothing is downloaded and a
 * query must always pass queryEmbeddings.
 */
import type { ChromaClient, Collection, Metadata } from 'chromadb';

export type VectorKind = 'content' | 'behaviour';
export const VECTOR_KINDS: readonly VectorKind[] = ['content', 'behaviour'];

export const collectionName = (kind: VectorKind, version: number): string => `movies_${kind}_v${version}`;

/**
 * One movie as the vector job writes it: the embedding and Chroma metadata as stored. Not the
 * serving side's VectorRecord (lib/models/vectors.ts), which is read back with the metadata
 * decoded into popularity and votes.
 */
export interface CollectionRecord {
  id: string;
  embedding: ArrayLike<number>;
  metadata: Metadata;
}

export const UPSERT_BATCH = 1000;

export async function getCollectionOrNull(client: ChromaClient, name: string): Promise<Collection | null> {
  try {
    return await client.getCollection({ name });
  } catch (err) {
    const e = err as Error;
    if (e.name === 'ChromaNotFoundError' || /not found|does not exist/i.test(e.message)) return null;
    throw err;
  }
}

export function createVectorCollection(client: ChromaClient, name: string, metadata: Metadata): Promise<Collection> {
  return client.createCollection({ name, embeddingFunction: null, configuration: { hnsw: { space: 'cosine' } }, metadata });
}

export async function upsertRecords(collection: Collection, records: CollectionRecord[], batch = UPSERT_BATCH): Promise<void> {
  for (let i = 0; i < records.length; i += batch) {
    const part = records.slice(i, i + batch);
    await collection.upsert({
      ids: part.map((r) => r.id),
      embeddings: part.map((r) => Array.from(r.embedding)),
      metadatas: part.map((r) => r.metadata),
    });
  }
}

/** Every record of a collection, paged; embeddings and metadata only when asked for. */
export async function readCollection(collection: Collection, opts: { embeddings?: boolean; metadatas?: boolean; page?: number } = {}): Promise<{ ids: string[]; embeddings: number[][]; metadatas: (Metadata | null)[] }> {
  const include: ('embeddings' | 'metadatas')[] = [];
  if (opts.embeddings) include.push('embeddings');
  if (opts.metadatas) include.push('metadatas');
  const page = opts.page ?? 2000;
  const out = { ids: [] as string[], embeddings: [] as number[][], metadatas: [] as (Metadata | null)[] };
  for (let offset = 0; ; offset += page) {
    const res = await collection.get({ limit: page, offset, include });
    out.ids.push(...res.ids);
    if (opts.embeddings) out.embeddings.push(...(res.embeddings as number[][]));
    if (opts.metadatas) out.metadatas.push(...(res.metadatas as (Metadata | null)[]));
    if (res.ids.length < page) break;
  }
  return out;
}

/**
 * Puts a freshly built staging collection in place of `target`: the old one is deleted and the
 * staging one renamed. Readers see the old vectors until the delete and the new ones a moment
 * later; a reader that hits the gap gets "not found" and falls back (inference does).
 */
export async function swapIn(client: ChromaClient, staging: Collection, target: string, metadata: Metadata): Promise<void> {
  await client.deleteCollection({ name: target }).catch((err: Error) => {
    if (!(err.name === 'ChromaNotFoundError' || /not found|does not exist/i.test(err.message))) throw err;
  });
  await staging.modify({ name: target, metadata });
}
