/**
 * Drives the Temporal Web UI (2.x, served by `temporal server start-dev`) in headless Chromium as an
 * operator would: the Start Workflow form, the Queries tab and the Send a Signal dialog. Elements
 * are found by their labels, ARIA names and the UI's own data-testid attributes; the JSON fields are
 * CodeMirror editors (role textbox, aria-label "Data"), filled with one text insertion so that the
 * editor's bracket auto-closing does not double the braces.
 */
import type { Page } from 'puppeteer-core';

export interface UiWorkflow { ui: string; namespace: string; workflowId: string }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The page's visible text, for assertions and error messages. */
export async function pageText(page: Page): Promise<string> {
  return (await page.evaluate('document.body.innerText')) as string;
}

/** The JSON a CodeMirror editor holds, or undefined while it holds none (or not yet whole). */
async function editorJson(page: Page, editor: string): Promise<{ text: string; json?: unknown }> {
  const text = ((await page.$eval(editor, (el) => el.textContent)) ?? '').trim();
  try { return { text, json: JSON.parse(text) }; } catch { return { text }; }
}

/**
 * Fills a CodeMirror JSON editor and checks that it holds exactly `value` (the UI re-indents it).
 * A click that lands while the form is still drawing leaves the editor unfocused and the typed text
 * goes nowhere; that shows as an empty editor, so it is cleared and typed again (three tries).
 */
async function fillJson(page: Page, editor: string, value: unknown): Promise<void> {
  const want = JSON.stringify(value);
  let held = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    await page.waitForSelector(editor, { visible: true, timeout: 15_000 });
    await page.locator(editor).click();
    // Select-all and Backspace go wherever the focus is: never into another field of the form.
    const focused = await page.waitForFunction(`document.querySelector(${JSON.stringify(editor)})?.contains(document.activeElement) === true`, { timeout: 3000 }).then(() => true, () => false);
    if (!focused) continue;
    await page.keyboard.down('Control');
    await page.keyboard.press('KeyA');
    await page.keyboard.up('Control');
    await page.keyboard.press('Backspace');
    await page.keyboard.sendCharacter(want);
    const deadline = Date.now() + 3000;
    for (;;) {
      const now = await editorJson(page, editor);
      held = now.text;
      if (now.json !== undefined && JSON.stringify(now.json) === want) return;
      if (Date.now() > deadline) break;
      await sleep(100);
    }
  }
  throw new Error(`the UI's JSON editor ${editor} holds ${JSON.stringify(held)}, not ${want}, after three tries`);
}

/**
 * Start Workflow form: workflow id, task queue, type and one JSON input; `beforeStart` runs on the
 * filled form. Resolves once the UI says it started.
 */
export async function startWorkflowInUi(
  page: Page, w: UiWorkflow & { taskQueue: string; workflowType: string; input: unknown; beforeStart?: () => Promise<unknown> },
): Promise<void> {
  await page.goto(`${w.ui}/namespaces/${w.namespace}/workflows/start-workflow`, { waitUntil: 'networkidle0' });
  await page.locator('input#workflowId').fill(w.workflowId);
  await page.locator('input#taskQueue').fill(w.taskQueue);
  await page.locator('input#workflowType').fill(w.workflowType);
  await fillJson(page, '[role=textbox][aria-label=Data]', w.input);
  // The editor hands its text to the form when it loses focus; a click on Start while it has the
  // focus only blurs it.
  await page.locator('h1').click();
  await page.waitForNetworkIdle({ idleTime: 300 });
  await w.beforeStart?.();
  await page.locator('[data-testid=start-workflow-button]').click();
  await page.waitForSelector('::-p-text(Workflow started successfully)', { timeout: 15_000 }).catch(async () => {
    throw new Error(`the UI did not confirm the start of ${w.workflowId}; the page says:\n${(await pageText(page)).slice(0, 3000)}`);
  });
}

/** Fails with the reason when the UI would not offer what these helpers drive (a UI started with write actions off). */
export async function expectUiWritable(ui: string): Promise<void> {
  const r = await fetch(`${ui}/api/v1/settings`);
  if (!r.ok) throw new Error(`${ui}/api/v1/settings answered ${r.status}: is the Temporal UI there?`);
  const s = await r.json() as Record<string, unknown>;
  const off = ['DisableWriteActions', 'StartWorkflowDisabled', 'WorkflowSignalDisabled'].filter((k) => s[k] === true);
  if (off.length) throw new Error(`the Temporal UI at ${ui} (version ${String(s.Version)}) has ${off.join(', ')} set: the release cannot be started or aborted from it`);
}

/** The workflow's page (latest run), once its header and tabs are drawn. */
export async function openWorkflow(page: Page, w: UiWorkflow): Promise<void> {
  // The page keeps long polls open, so it never reaches network idle.
  await page.goto(`${w.ui}/namespaces/${w.namespace}/workflows/${encodeURIComponent(w.workflowId)}`, { waitUntil: 'load' });
  await page.waitForSelector('[data-testid=queries-tab]', { visible: true, timeout: 30_000 });
}

/** The workflow's status badge in the page header (RUNNING, COMPLETED, ...). */
export async function workflowStatusInUi(page: Page, w: UiWorkflow): Promise<string> {
  await openWorkflow(page, w);
  const m = /\n(RUNNING|COMPLETED|FAILED|TERMINATED|CANCELED|TIMED OUT|CONTINUED AS NEW)\n/.exec(await pageText(page));
  if (!m) throw new Error(`no workflow status in the page of ${w.workflowId}:\n${(await pageText(page)).slice(0, 2000)}`);
  return m[1];
}

/** The JSON a read-only editor of the page shows (the UI draws results and attributes in CodeMirror). */
async function shownJson(page: Page, label: string): Promise<unknown> {
  const editor = `[role=textbox][aria-label="${label}"]`;
  // A string: the project compiles without the DOM library; this runs in the page.
  await page.waitForFunction(`(document.querySelector(${JSON.stringify(editor)})?.textContent ?? '').trim().length > 0`, { timeout: 30_000 });
  // The editor draws only the lines in view (the page must be tall enough for the whole text).
  const text = (await page.$eval(editor, (el) => el.textContent)) ?? '';
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`"${label}" in the UI is not whole JSON (a taller viewport?): ${text.slice(0, 500)}`);
  }
}

/** The Search Attributes tab: the workflow's search attributes as the UI shows them. */
export async function searchAttributesInUi(page: Page, w: UiWorkflow): Promise<Record<string, unknown>> {
  await openWorkflow(page, w);
  await page.locator('[data-testid=search-attributes-tab]').click();
  return await shownJson(page, 'Search Attributes') as Record<string, unknown>;
}

/**
 * Runs a query from the Queries tab and returns its result as the page shows it, parsed. The query
 * types come from the workflow itself (its metadata query), so `name` must be one it defines.
 */
export async function queryInUi(page: Page, w: UiWorkflow & { name: string }): Promise<unknown> {
  await openWorkflow(page, w);
  await page.locator('[data-testid=queries-tab]').click();
  const select = '[data-testid=query-select-button]';
  await page.waitForSelector(select, { visible: true });
  // The first query type is selected by default; choose `name` when it is another.
  if ((await page.$eval('input#query-select', (el) => (el as unknown as { value: string }).value)) !== w.name) {
    await page.locator(select).click();
    await page.locator(`li[role=option] ::-p-text(${w.name})`).click();
  }
  await page.locator('::-p-aria([role="button"][name="Run Query"])').click();
  return shownJson(page, 'Query Result');
}

/** More Actions → Send a Signal: picks `name` from the workflow's signals, gives `input` as JSON, submits. */
export async function signalInUi(page: Page, w: UiWorkflow & { name: string; input: unknown }): Promise<void> {
  await openWorkflow(page, w);
  await page.locator('::-p-aria([role="button"][name="More Actions"])').click();
  await page.locator('::-p-aria([role="menuitem"][name="Send a Signal"])').click();
  const dialog = 'dialog[open][data-testid=signal-confirmation-modal]';
  await page.locator(`${dialog} [data-testid=signal-select-button]`).click();
  await page.locator(`${dialog} li[role=option] ::-p-text(${w.name})`).click();
  await fillJson(page, `${dialog} [role=textbox][aria-label=Data]`, w.input);
  // Blur the editor inside the dialog (a click on its title would close it).
  await page.locator(`${dialog} h5 ::-p-text(Input)`).click();
  await sleep(300);
  await page.locator(`${dialog} [data-testid=confirm-modal-button]`).click();
  await page.waitForSelector(dialog, { hidden: true, timeout: 15_000 });
}
