/**
 * The run page in a real browser (Debian's headless Chromium driven by playwright-core; the
 * setup installs it the first time when missing, see test/harness/chromium.ts):
 * it shows the DAG coloured by state, links each task and the Temporal UI, loads nothing
 * from outside the API, and refreshes while the run is live.
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { browserStack } from '../harness/browser.js';
import { CHROMIUM_INSTALL_TIMEOUT_MS } from '../harness/chromium.js';
import { waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const KEY = 'run-page-test-admin-key-0123456789';
let stack: TestStack;
let base: string;
let browser: Browser;
let stop: () => Promise<void>;

beforeAll(async () => {
  stack = await testStack('page');
  ({ base, browser, stop } = await browserStack(stack, KEY, 'pages'));
}, CHROMIUM_INSTALL_TIMEOUT_MS);
afterAll(async () => {
  await stop?.();
  await stack?.close();
});

it('shows the run graph by state, links tasks and the Temporal UI, and refreshes while live', async () => {
  const h = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
  await fetch(`${base}/api/v1/pipelines`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({
      id: 'paged',
      tasks: [
        { id: 'first', kind: 'noop' },
        { id: 'boom', kind: 'fail', needs: ['first'] },
        { id: 'never', kind: 'noop', needs: ['boom'] },
        { id: 'slow', kind: 'wait', duration: '4s' },
      ],
    }),
  });
  const run = (await (
    await fetch(`${base}/api/v1/pipelines/paged/runs`, { method: 'POST', headers: h, body: '{}' })
  ).json()) as { runId: string; uiUrl: string };
  const ctx = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${KEY}` } });
  const outside: string[] = [];
  ctx.on('request', (r) => {
    if (!r.url().startsWith(base)) outside.push(r.url());
  });
  const page = await ctx.newPage();
  const url = `${base}/runs/${encodeURIComponent(run.runId)}`;
  await page.goto(url);
  expect(await page.locator('#status').textContent()).toBe('running');
  // the page reloads itself until the run ends
  await waitFor(async () => (await page.locator('#status').textContent()) === 'failed', 30_000);
  expect(await page.locator('g.task[data-task="first"]').getAttribute('data-status')).toBe('success');
  expect(await page.locator('g.task[data-task="boom"]').getAttribute('data-status')).toBe('failed');
  expect(await page.locator('g.task[data-task="never"]').getAttribute('data-status')).toBe('upstream_failed');
  const fill = await page.locator('g.task[data-task="boom"] rect').getAttribute('fill');
  expect(fill).toBe('#fca5a5');
  expect(await page.locator('#temporal').getAttribute('href')).toBe(run.uiUrl);
  // a task links to its details
  await page.locator('g.task[data-task="boom"] a').click();
  await page.waitForURL(/\/tasks\/boom$/);
  expect(JSON.parse((await page.textContent('body'))!)).toMatchObject({ task: 'boom', status: 'failed' });
  await page.goto(url);
  const shot = await page.screenshot({ path: process.env.STRATA_SCREENSHOT });
  expect(shot.length).toBeGreaterThan(1000);
  expect(outside).toEqual([]);
  await ctx.close();
});
