import { Context } from '@temporalio/activity';

/** Heartbeats when called inside an activity; a no-op elsewhere (the same code runs from the CLI and tests). */
export function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch { /* not in an activity */ }
}

/** Heartbeats now and every `ms` until the returned function is called. */
export function heartbeatEvery(ms: number, details: () => unknown): () => void {
  heartbeat(details());
  const timer = setInterval(() => heartbeat(details()), ms);
  return () => clearInterval(timer);
}
