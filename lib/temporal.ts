import { Client, Connection } from '@temporalio/client';
import type { Config } from './config.ts';

/** A Temporal client on the configured address and namespace; call `client.connection.close()` when done. */
export async function connectClient(cfg: Config): Promise<Client> {
  const connection = await Connection.connect({ address: cfg.temporal.address });
  return new Client({ connection, namespace: cfg.temporal.namespace });
}
