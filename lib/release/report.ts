import { formatFairness } from '../report/release.ts';
import type { ReleaseStatus } from './types.ts';

/** The outcome e-mail: decision and reason first, then the judge's table and the timeline. */
export function formatReleaseEmail(s: ReleaseStatus): { subject: string; text: string } {
  const decision = (s.decision ?? 'unknown').toUpperCase();
  const lines = [
    `Release ${s.version} (${s.model}): ${decision}`,
    '',
    `Reason: ${s.reason ?? '(none)'}`,
    '',
  ];
  if (s.judge) {
    lines.push(`Judge: ${s.judge.verdict}`, s.judge.explanation, '', s.judge.table, '');
    const fairness = formatFairness(s.judge.numbers);
    if (fairness.length) lines.push(...fairness, '');
  }
  if (s.offline) lines.push(`Offline gate: ${s.offline.passed ? 'passed' : 'not passed'} (${s.offline.reason})`, s.offline.table, '');
  if (s.lastGuardrail) {
    lines.push(`Guardrails: ${s.guardrailChecks} checks, last ${s.lastGuardrail.ok ? 'ok' : `violated: ${s.lastGuardrail.violations.join('; ')}`}`, '');
  }
  if (s.image) lines.push(`Image: ${s.image.image} ${s.image.imageId} (commit ${s.image.gitCommit}, spec ${s.image.specHash})`, '');
  lines.push('Timeline:');
  for (const [phase, at] of Object.entries(s.phaseTimes)) lines.push(`  ${at}  ${phase}`);
  return { subject: `[marquee] release ${s.version}: ${decision}`, text: lines.join('\n') + '\n' };
}
