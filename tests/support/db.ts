// Shared with the benchmarks, which may not import tests/: the rig lives in testkit/.
export { scratchDatabase, type ScratchDatabase } from '../../testkit/db.ts';
