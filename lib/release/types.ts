/** Shapes shared by the CanaryRelease workflow, its activities and the CLI. Type-only, workflow-safe. */

export type ReleasePhase =
  | 'starting' | 'offline-eval' | 'building' | 'deploying' | 'routing' | 'baking' | 'online-eval'
  | 'promoting' | 'aborting' | 'promoted' | 'aborted' | 'failed';

export const TERMINAL_PHASES: ReleasePhase[] = ['promoted', 'aborted', 'failed'];

/** Argo Rollouts' analysis outcomes. */
export type Verdict = 'Successful' | 'Failed' | 'Inconclusive';

export interface JudgeResult {
  verdict: Verdict;
  /** One line: why. */
  reason: string;
  /** One paragraph readable in an e-mail. */
  explanation: string;
  /** A plain-text table of the numbers used. */
  table: string;
  numbers: Record<string, number | string | null>;
}

export interface GuardrailResult {
  ok: boolean;
  violations: string[];
  numbers: Record<string, number | string | null>;
}

export interface OfflineGateResult {
  passed: boolean;
  reason: string;
  table: string;
  numbers: Record<string, number | string | null>;
}

export interface BuiltImage {
  image: string;
  imageId: string;
  gitCommit: string;
  specHash: string;
  runtime: 'docker' | 'process';
}

export interface ReleaseStatus {
  version: string;
  model: string;
  /** Share of users in nightly at the current step. */
  percent: number;
  /** The progressive steps' percents (one step unless the input gave `steps`); absent in runs from before steps. */
  steps?: number[];
  /** The current step, 1-based (set once traffic is routed). */
  step?: number;
  phase: ReleasePhase;
  /** ISO times at which each phase began. */
  phaseTimes: Partial<Record<ReleasePhase, string>>;
  bakeEndsAt?: string;
  image?: BuiltImage;
  guardrailChecks: number;
  consecutiveGuardrailFailures: number;
  lastGuardrail?: GuardrailResult;
  offline?: OfflineGateResult;
  judge?: JudgeResult;
  /** Whether a bake was extended once after an Inconclusive verdict (at most once per step). */
  extended: boolean;
  decision?: 'promoted' | 'aborted' | 'failed';
  reason?: string;
  /** Set when the outcome e-mail could not be sent (a run from before the mail was retried until it succeeds). */
  mail?: string;
  /** The cleanup step the release is waiting for, e.g. "all traffic back to main (setRouting)"; retried until it succeeds. */
  waitingFor?: string;
  /** An abort that arrived once the promotion had begun: not applied, the promotion is finished (README, operator guide). */
  abortNotApplied?: string;
}

export interface ReleaseOutcome {
  version: string;
  decision: 'promoted' | 'aborted' | 'failed';
  reason: string;
  status: ReleaseStatus;
}
