import { ApplicationFailure, Context } from '@temporalio/activity';
import { withTransaction } from '../lib/db.ts';
import { loadSpec } from '../lib/models/spec.ts';
import type { ReleaseDefaults, ResolvedReleaseInput } from '../lib/release/input.ts';
import { TERMINAL_PHASES, type ReleasePhase, type ReleaseStatus } from '../lib/release/types.ts';
import { formatReleaseEmail } from '../lib/release/report.ts';
import { reconcileNow } from '../lib/release/workflow-state.ts';
import type { ActivityDeps } from './deps.ts';

/** How long beginRelease waits for a reconcile of the release in its way (its activity has 1 minute). */
const RECONCILE_WAIT_MS = 40_000;

export function releaseActivities({ cfg, pool, mailer, temporal }: ActivityDeps) {
  /** The one release that is in flight according to the table, if any. */
  const inFlight = async (): Promise<{ id: string; phase: string } | undefined> =>
    (await pool.query('SELECT id, phase FROM releases WHERE NOT (phase = ANY($1)) ORDER BY started_at LIMIT 1', [TERMINAL_PHASES])).rows[0];

  return {
    /** The release defaults of the worker's temporal.yaml (the workflow cannot read files). */
    async releaseDefaults(): Promise<ReleaseDefaults> {
      return { ...cfg.release, notify: cfg.smtp.to };
    },

    /**
     * Claims the one release slot: refuses a version released before and any start while another
     * release is in flight. Idempotent for the same workflow run (a retry finds its own row).
     */
    async beginRelease(a: { input: ResolvedReleaseInput; workflowId: string; runId: string }): Promise<void> {
      let loaded;
      try {
        loaded = loadSpec(a.input.model);
      } catch (err) {
        throw ApplicationFailure.nonRetryable((err as Error).message, 'BadModelSpec');
      }
      // A release in the way whose workflow is closed (terminated from the UI, say) is cleaned up
      // first, so that it cannot block every later release.
      const blocking = await inFlight();
      if (blocking && blocking.id !== a.input.version) {
        const taskQueue = Context.current().info.taskQueue;
        const reconciled = await reconcileNow(temporal, { taskQueue, by: `beginRelease of ${a.input.version}`, waitMs: RECONCILE_WAIT_MS });
        if (reconciled === undefined) {
          throw ApplicationFailure.nonRetryable(`release ${blocking.id} is in phase ${blocking.phase} and its reconcile is still cleaning up (see marquee status ${blocking.id}); start ${a.input.version} again when it has finished`, 'ReleaseInFlight');
        }
      }
      await withTransaction(pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(7242002)');
        const { rows: own } = await client.query('SELECT workflow_id, run_id, phase FROM releases WHERE id = $1', [a.input.version]);
        if (own.length) {
          if (own[0].run_id === a.runId) return;
          throw ApplicationFailure.nonRetryable(`version ${a.input.version} was released before (phase ${own[0].phase}, workflow ${own[0].workflow_id}); choose a new version`, 'VersionTaken');
        }
        const { rows: busy } = await client.query('SELECT id, phase FROM releases WHERE NOT (phase = ANY($1)) LIMIT 1', [TERMINAL_PHASES]);
        if (busy.length) {
          throw ApplicationFailure.nonRetryable(`release ${busy[0].id} is in phase ${busy[0].phase} and its workflow is still running; only one release bakes at a time (abort it first: marquee abort ${busy[0].id} --reason ...)`, 'ReleaseInFlight');
        }
        await client.query(`INSERT INTO releases (id, model_spec, spec, spec_hash, workflow_id, run_id, phase, phase_times)
          VALUES ($1, $2, $3, $4, $5, $6, 'starting', jsonb_build_object('starting', now()))`,
        [a.input.version, loaded.path, JSON.stringify(loaded.spec), loaded.hash, a.workflowId, a.runId]);
      });
    },

    async recordPhase(a: { version: string; phase: ReleasePhase; at: string }): Promise<void> {
      await pool.query(
        `UPDATE releases SET phase = $2, phase_times = phase_times || jsonb_build_object($2::text, $3::text) WHERE id = $1`,
        [a.version, a.phase, a.at]);
    },

    async finishRelease(a: { version: string; decision: string; reason: string; status: ReleaseStatus }): Promise<void> {
      const s = a.status;
      await pool.query(
        `UPDATE releases SET decision = $2, reason = $3, metrics = $4, image = $5, image_digest = $6, git_commit = $7,
           ended_at = coalesce(ended_at, now()) WHERE id = $1`,
        [a.version, a.decision, a.reason, JSON.stringify({ offline: s.offline ?? null, judge: s.judge ?? null, lastGuardrail: s.lastGuardrail ?? null, guardrailChecks: s.guardrailChecks, extended: s.extended }),
          s.image?.image ?? null, s.image?.imageId ?? null, s.image?.gitCommit ?? null]);
    },

    /** E-mails the outcome with the judge's table. Retried by Temporal until the SMTP server takes it. */
    async notifyReleaseOutcome(a: { to: string[]; status: ReleaseStatus }): Promise<{ messageId: string }> {
      const mail = formatReleaseEmail(a.status);
      return mailer.send({ to: a.to, subject: mail.subject, text: mail.text });
    },
  };
}
