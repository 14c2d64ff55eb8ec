/**
 * The message an operator needs from a workflow-side failure: an ActivityFailure wraps an
 * ApplicationFailure that wraps the real error, so the deepest non-empty message is the one to show.
 */
export function rootMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  let message = e?.message ?? String(err);
  while (e?.cause) {
    e = e.cause as { message?: string; cause?: unknown };
    if (e.message) message = e.message;
  }
  return message;
}
