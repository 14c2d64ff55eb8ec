// Every workflow the worker registers (the worker bundles this file; keep it deterministic code only).
export { ping } from './ping.ts';
export { DatabaseBackup } from './backup.ts';
export { DatabaseRestore } from './restore.ts';
export { CanaryRelease, abortSignal, promoteUpdate, statusQuery } from './canary.ts';
export { ReconcileReleases, reconcileStatusQuery } from './reconcile.ts';
