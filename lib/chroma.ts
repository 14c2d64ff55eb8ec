import { ChromaClient } from 'chromadb';
import type { Config } from './config.ts';

/** A ChromaDB client for cfg.chroma.url. Collections we use hold explicit embeddings only (see lib/vectors). */
export function createChromaClient(cfg: Config): ChromaClient {
  const url = new URL(cfg.chroma.url);
  const ssl = url.protocol === 'https:';
  return new ChromaClient({ host: url.hostname, port: Number(url.port || (ssl ? 443 : 80)), ssl });
}
