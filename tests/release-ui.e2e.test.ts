/**
 * A release run from the Temporal Web UI in headless Chromium (Debian's chromium driven by
 * puppeteer-core), against the stack's Temporal dev server and its UI: the Start Workflow form
 * starts CanaryRelease with a JSON input, the Queries tab's `status` shows the phase, the Send a
 * Signal dialog sends `abort`, and the page then shows the release closed and aborted. The Temporal
 * client, Postgres and the gateway confirm each step: traffic split during the bake, all of it back
 * on main after the abort, nightly gone, the row and the mail.
 *
 * The release runs on the release rig (tests/support/release-rig.ts): a worker with the real
 * activities on a task queue of its own, the real gateway, a contract stub as nightly. Screenshots
 * of the UI (the filled form, the bake, the abort) are kept in .marquee/test-artifacts/release-ui/.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'puppeteer-core';
import type { ReleaseStatus } from '../lib/release/types.ts';
import { releaseRig, until } from './support/release-rig.ts';

// Before anything else loads the config: the rig sets the database, task queue and ports.
const rig = await releaseRig('release-ui');
const { stateDir } = await import('../lib/config.ts');
const { launchChromium } = await import('./support/browser.ts');
const { requireServer } = await import('./support/servers.ts');
const { expectUiWritable, pageText, queryInUi, searchAttributesInUi, signalInUi, startWorkflowInUi, workflowStatusInUi } = await import('./support/temporal-ui.ts');

const { cfg, tag } = rig;
const ui = `http://127.0.0.1:${cfg.temporal.uiPort}`;
const version = `ui-${tag}`;
const w = { ui, namespace: cfg.temporal.namespace, workflowId: `release-${version}` };
const artifacts = path.join(stateDir(), 'test-artifacts', 'release-ui');
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let browser: Browser;
let page: Page;

/** A full-page screenshot kept as a test artifact; returns its path. */
async function keepScreenshot(name: string): Promise<string> {
  const file = path.join(artifacts, name);
  writeFileSync(file, await page.screenshot({ fullPage: true, type: 'png' }));
  return file;
}

function expectPng(file: string) {
  const png = readFileSync(file);
  expect(png.subarray(0, 8).equals(PNG_SIGNATURE), `${file} is a PNG`).toBe(true);
  // A drawn page, not a blank one: an empty 1400x1600 PNG compresses to a few kB.
  expect(png.length, file).toBeGreaterThan(30_000);
}

describe('a release from the Temporal UI', () => {
  beforeAll(async () => {
    await requireServer('the Temporal UI', cfg.temporal.uiPort);
    await expectUiWritable(ui);
    await rig.start();
    rmSync(artifacts, { recursive: true, force: true });
    mkdirSync(artifacts, { recursive: true });
    browser = await launchChromium();
    page = await browser.newPage();
    // Tall enough that the query result (a CodeMirror editor, which draws only visible lines) fits.
    await page.setViewport({ width: 1400, height: 1600 });
  });

  afterAll(async () => {
    await rig.client?.workflow.getHandle(w.workflowId).terminate('test cleanup').catch(() => undefined);
    await browser?.close();
    await rig.stop();
  }, 120_000);

  it('starts CanaryRelease from the Start Workflow form, shows its phase, aborts it with the abort signal', async () => {
    try {
      // Start: the form, as the README tells an operator to fill it.
      const input = { version, model: 'models/affinity-v1.json', percent: 20, bake: '2h', interval: '30m' };
      let formShot = '';
      await startWorkflowInUi(page, {
        ...w, taskQueue: cfg.temporal.taskQueue, workflowType: 'CanaryRelease', input,
        beforeStart: async () => { formShot = await keepScreenshot('01-start-form.png'); },
      });
      const handle = rig.client.workflow.getHandle(w.workflowId);
      const started = await handle.describe();
      expect(started).toMatchObject({ type: 'CanaryRelease', taskQueue: cfg.temporal.taskQueue });
      expect(started.status.name).toBe('RUNNING');

      // The phase, from the Queries tab: the status query until the release bakes.
      const baking = await until('the UI showing phase baking', async () => {
        const status = await queryInUi(page, { ...w, name: 'status' }) as ReleaseStatus;
        return status.phase === 'baking' ? status : undefined;
      }, 90_000);
      expect(baking).toMatchObject({ version, model: 'models/affinity-v1.json', percent: 20, step: 1, steps: [20] });
      expect(baking.bakeEndsAt).toMatch(/^\d{4}-\d\d-\d\dT/);
      const startedShot = await keepScreenshot('02-started-baking.png');
      expect(await workflowStatusInUi(page, w)).toBe('RUNNING');
      // The list's MarqueePhase column comes from the search attribute the workflow sets.
      expect(await searchAttributesInUi(page, w)).toMatchObject({ MarqueePhase: ['baking'], MarqueeVersion: [version] });
      // The release is real: a fifth of the users are on nightly.
      expect(await rig.routing()).toMatchObject({ nightly_percent: 20, release_id: version });
      expect(await rig.servedBy(60)).toEqual(new Set(['main', 'nightly']));
      const nightly = rig.nightly()!;
      expect(nightly.deployedVersion).toBe(version);

      // Abort: the Send a Signal dialog, signal `abort` with the operator's note.
      await signalInUi(page, { ...w, name: 'abort', input: { reason: 'aborted from the Temporal UI', by: 'ui-operator' } });
      const outcome = await handle.result() as { decision: string; reason: string };
      expect(outcome).toMatchObject({ decision: 'aborted', reason: 'aborted by ui-operator: aborted from the Temporal UI' });

      // The page shows it closed, and the status query there says aborted.
      expect(await workflowStatusInUi(page, w)).toBe('COMPLETED');
      const aborted = await queryInUi(page, { ...w, name: 'status' }) as ReleaseStatus;
      expect(aborted).toMatchObject({ phase: 'aborted', decision: 'aborted', reason: 'aborted by ui-operator: aborted from the Temporal UI' });
      expect(Object.keys(aborted.phaseTimes)).toEqual(expect.arrayContaining(['baking', 'aborting', 'aborted']));
      const abortedShot = await keepScreenshot('03-aborted.png');
      expect(await searchAttributesInUi(page, w)).toMatchObject({ MarqueePhase: ['aborted'] });

      // And everywhere else: traffic back to main, nightly gone, the row finished, the mail sent.
      expect((await handle.describe()).status.name).toBe('COMPLETED');
      expect(await rig.routing()).toMatchObject({ nightly_percent: 0, release_id: null, nightly_url: null });
      expect(await rig.servedBy(60)).toEqual(new Set(['main']));
      expect(nightly.proc.exitCode !== null || nightly.proc.signalCode !== null).toBe(true);
      expect(rig.nightly()).toBeUndefined();
      expect(await rig.row(version)).toMatchObject({ phase: 'aborted', decision: 'aborted', reason: 'aborted by ui-operator: aborted from the Temporal UI' });
      await until('the outcome mail', async () => rig.mails.find((m) => m.includes(`[marquee] release ${version}: ABORTED`)));

      for (const shot of [formShot, startedShot, abortedShot]) expectPng(shot);
      console.log(`screenshots: ${[formShot, startedShot, abortedShot].join(', ')}`);
    } catch (err) {
      // What the browser saw when it went wrong, next to the other artifacts.
      await keepScreenshot('failure.png').catch(() => undefined);
      const text = await pageText(page).catch(() => '');
      throw new Error(`${(err as Error).message}\n--- the page (${page.url()}):\n${text.slice(0, 2000)}`, { cause: err });
    }
  }, 240_000);
});
