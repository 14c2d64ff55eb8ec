import { ChromaClient } from 'chromadb';
import type { Config } from './config.ts';

/** A ChromaDB client for a server URL (http or https; the port defaults to the scheme's). */
export function chromaClientAt(url: string): ChromaClient {
  const u = new URL(url);
  const ssl = u.protocol === 'https:';
  return new ChromaClient({ host: u.hostname, port: Number(u.port || (ssl ? 443 : 80)), ssl });
}

/** A ChromaDB client for cfg.chroma.url. Collections we use hold explicit embeddings only (see lib/vectors). */
export function createChromaClient(cfg: Config): ChromaClient {
  return chromaClientAt(cfg.chroma.url);
}
