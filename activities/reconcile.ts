/**
 * The side effects of a reconcile (lib/release/reconcile.ts has the rules): find the unfinished
 * releases whose workflow is closed, finish their rows, mail the outcome. Routing back to main and
 * removing nightly are the canary's own setRouting/removeSlot. Driven by the ReconcileReleases
 * workflow; each step is safe to repeat, and two reconciles at once finish (and mail) a row once.
 */
import { reconcilePlan, RECONCILED_PHASE, formatReconcileEmail, type ReconcilePlan, type UnfinishedRelease } from '../lib/release/reconcile.ts';
import { TERMINAL_PHASES } from '../lib/release/types.ts';
import { workflowState } from '../lib/release/workflow-state.ts';
import type { ActivityDeps } from './deps.ts';

export function reconcileActivities({ cfg, pool, runtime, temporal, mailer }: ActivityDeps) {
  return {
    /** Every unfinished release whose workflow run is closed, with what its cleanup may touch. */
    async findReleasesToReconcile(): Promise<ReconcilePlan[]> {
      const { rows } = await pool.query<{ id: string; workflow_id: string | null; run_id: string | null; phase: string }>(
        'SELECT id, workflow_id, run_id, phase FROM releases WHERE phase <> ALL($1::text[]) ORDER BY started_at', [TERMINAL_PHASES]);
      if (rows.length === 0) return [];
      const unfinished: UnfinishedRelease[] = rows.map((r) => ({ version: r.id, workflowId: r.workflow_id ?? `release-${r.id}`, runId: r.run_id, phase: r.phase }));
      const states = await Promise.all(unfinished.map((u) => workflowState(temporal, u.workflowId, u.runId)));
      const running = unfinished.filter((_, i) => states[i].status === 'RUNNING').map((u) => u.version);
      const { rows: routing } = await pool.query<{ release_id: string | null }>('SELECT release_id FROM routing_state WHERE id = 1');
      const nightly = await runtime.describe('nightly');
      const world = { routingReleaseId: routing[0]?.release_id ?? null, nightlyVersion: nightly?.version ?? null, running };
      return unfinished.map((u, i) => reconcilePlan(u, states[i], world)).filter((p): p is ReconcilePlan => p !== null);
    },

    /**
     * Finishes the row as the workflow's close status (phase aborted: its traffic is back on main).
     * Only the run the plan saw, and only while unfinished: false when another reconcile did it.
     */
    async finishReconciledRelease(a: { plan: ReconcilePlan; routedBack: boolean; nightlyRemoved: boolean; by: string }): Promise<{ finished: boolean; phaseTimes: Record<string, string> }> {
      const { rows } = await pool.query<{ phase_times: Record<string, string> }>(
        `UPDATE releases SET phase = $3, decision = $4, reason = $5, ended_at = coalesce(ended_at, now()),
           phase_times = phase_times || jsonb_build_object($3::text, now()),
           metrics = coalesce(metrics, '{}'::jsonb) || jsonb_build_object('reconciled', $6::jsonb)
         WHERE id = $1 AND run_id IS NOT DISTINCT FROM $2 AND phase <> ALL($7::text[])
         RETURNING phase_times`,
        [a.plan.version, a.plan.runId, RECONCILED_PHASE, a.plan.decision, a.plan.reason,
          JSON.stringify({ by: a.by, workflow: a.plan.workflow, phaseBefore: a.plan.phase, routedBack: a.routedBack, nightlyRemoved: a.nightlyRemoved }),
          TERMINAL_PHASES]);
      return { finished: rows.length === 1, phaseTimes: rows[0]?.phase_times ?? {} };
    },

    /** Mails the reconciled outcome to the release recipients of temporal.yaml. */
    async notifyReconciled(a: { version: string; decision: string; reason: string; routedBack: boolean; nightlyRemoved: boolean; phaseTimes: Record<string, string> }): Promise<{ messageId: string }> {
      const mail = formatReconcileEmail(a);
      return mailer.send({ to: cfg.smtp.to, subject: mail.subject, text: mail.text });
    },
  };
}
