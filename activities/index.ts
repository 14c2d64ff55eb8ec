// Every activity the worker registers. Workflows import this file for its types only.
export { ping } from './ping.ts';
export {
  applyRetention, carryOver, checkReleases, dropRestoreTarget, dumpDatabase, pauseIngest, recordBackup, recordRestore,
  restoreInto, resumeIngest, switchDatabase, verifyBackup, verifyRestored,
} from './database.ts';
export { sendEmail } from './notify.ts';
export { beginRelease, finishRelease, notifyReleaseOutcome, recordPhase, releaseDefaults } from './release.ts';
export { buildInferenceImage, deploySlot, promoteSlot, removeSlot, setRouting } from './containers.ts';
export { checkGuardrails, judgeRelease, offlineGate } from './evaluation.ts';
