/** The release input's validation and defaults (lib/release/input.ts), shared by the CLI and the workflow. */
import { describe, expect, it } from 'vitest';
import { releaseInputProblems, resolveReleaseInput, type ReleaseDefaults } from '../lib/release/input.ts';

const base = { version: 'v2', model: 'models/affinity-v1.json' };
const defaults: ReleaseDefaults = { percent: 20, bake: '12h', interval: '30m', notify: ['oncall@localhost'], maxConsecutiveGuardrailFailures: 3, inconclusiveExtension: '6h' };
const STEPS_RULE = 'steps: must be 1 to 5 increasing integer percents from 1 to 50, such as [5, 20, 50]';

describe('release input steps', () => {
  it('accepts increasing percents from 1 to 50, at most 5 of them', () => {
    for (const steps of [[5, 20, 50], [1], [50], [1, 2, 3, 4, 5], [10, 50]]) expect(releaseInputProblems({ ...base, steps }), JSON.stringify(steps)).toEqual([]);
  });

  it('refuses anything else with a message naming the field and what it got', () => {
    for (const steps of [[], [20, 5], [5, 5], [0, 10], [5, 60], [5.5, 20], [1, 2, 3, 4, 5, 6], ['5', 20], 20, null]) {
      expect(releaseInputProblems({ ...base, steps }), JSON.stringify(steps)).toEqual([`${STEPS_RULE} (got ${JSON.stringify(steps)})`]);
    }
  });

  it('refuses percent and steps together: the first bake\'s share would be unclear', () => {
    expect(releaseInputProblems({ ...base, percent: 5, steps: [5, 20] })).toEqual(['steps: give either percent (one step) or steps, not both']);
  });

  it('defaults to one step at percent (the input\'s, else the deployment\'s)', () => {
    expect(resolveReleaseInput(base, defaults)).toMatchObject({ steps: [20], percent: 20 });
    expect(resolveReleaseInput({ ...base, percent: 7 }, defaults)).toMatchObject({ steps: [7], percent: 7 });
    expect(resolveReleaseInput({ ...base, steps: [5, 20, 50] }, defaults)).toMatchObject({ steps: [5, 20, 50], percent: 5 });
  });
});
