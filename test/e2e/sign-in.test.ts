/**
 * Sign-in for browsers, in a real headless Chromium (playwright-core): a person follows a
 * link to a run page, is sent to sign in, pastes a key, and lands on the run page; the
 * session cookie is HttpOnly and SameSite, reads only, survives nothing it should not
 * (sign-out, a revoked key), and cross-site forms cannot sign in or out.
 */
import { createHash } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createKey, revokeKey } from '../../store/keys.js';
import { migrate } from '../../store/migrate.js';
import { browserStack } from '../harness/browser.js';
import { CHROMIUM_INSTALL_TIMEOUT_MS } from '../harness/chromium.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const BOOT = 'sign-in-test-admin-key-0123456789';
let stack: TestStack;
let base: string;
let browser: Browser;
let stop: () => Promise<void>;
let tenant: string;
let viewer: { id: string; secret: string };
let runId: string;

beforeAll(async () => {
  stack = await testStack('signin');
  await migrate(stack.db);
  tenant = `signin${stack.tenant}`;
  ({ base, browser, stop } = await browserStack(stack, BOOT, 'platform'));
  const admin = (await createKey(stack.db, tenant, 'admin')).secret;
  viewer = await createKey(stack.db, tenant, 'viewer');
  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  await fetch(`${base}/api/v1/pipelines`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({ id: 'signed', tasks: [{ id: 'only', kind: 'noop' }] }),
  });
  runId = (
    (await (
      await fetch(`${base}/api/v1/pipelines/signed/runs`, { method: 'POST', headers: h, body: '{}' })
    ).json()) as { runId: string }
  ).runId;
}, CHROMIUM_INSTALL_TIMEOUT_MS);
afterAll(async () => {
  await stop?.();
  await stack?.close();
});

it('follows a link to a run page, signs in, lands there; the cookie is HttpOnly, SameSite, and reads only', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const runPath = `/runs/${encodeURIComponent(runId)}`;
  // A person opens the link (from the CLI, an alert, the Temporal UI): no key, so sign in first.
  await page.goto(base + runPath);
  expect(new URL(page.url()).pathname).toBe('/login');
  expect(new URL(page.url()).searchParams.get('next')).toBe(runPath);
  // A wrong key says so and keeps the person on the form.
  await page.fill('#key', 'strata_not-a-key');
  await page.click('#sign-in');
  expect(await page.locator('#error').textContent()).toMatch(/unknown or revoked/);
  await page.fill('#key', viewer.secret);
  await page.click('#sign-in');
  await page.waitForURL(base + runPath);
  expect(await page.locator('#status').textContent()).toMatch(/running|success/);
  expect(await page.locator('g.task[data-task="only"]').count()).toBe(1);
  // The cookie: HttpOnly (no script sees it), SameSite, short-lived, and not the key.
  const cookies = await ctx.cookies(base);
  const session = cookies.find((c) => c.name === 'strata_session')!;
  expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
  expect(session.expires * 1000 - Date.now()).toBeLessThanOrEqual(2 * 3600_000 + 5000);
  expect(session.value).not.toContain(viewer.secret);
  expect(await page.evaluate(() => document.cookie)).not.toContain('strata_session');
  const row = (
    await stack.db.query<any>('SELECT tenant, role, key_id FROM browser_sessions WHERE key_id = $1', [viewer.id])
  ).rows;
  expect(row).toEqual([{ tenant, role: 'viewer', key_id: viewer.id }]);
  // The same tenant and role as the key: its JSON reads work; another tenant's run is not there.
  const api = await page.goto(`${base}/api/v1/runs/${encodeURIComponent(runId)}`);
  expect(api!.status()).toBe(200);
  expect((await api!.json()).runId).toBe(runId);
  expect((await page.goto(`${base}/api/v1/runs/${encodeURIComponent('pipeline/platform/x/y')}`))!.status()).toBe(404);
  // A session reads only: a state-changing request with just the cookie is refused, and starts nothing.
  const post = await page.evaluate(async () => {
    const r = await fetch('/api/v1/pipelines/signed/runs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    return { status: r.status, body: await r.text() };
  });
  expect(post.status).toBe(401);
  expect(post.body).toMatch(/browser session only reads/);
  // The docs open too.
  expect((await page.goto(`${base}/docs`))!.status()).toBe(200);
  await ctx.close();
});

it('signs out with the form (CSRF token), refuses cross-site sign-in and sign-out, and ends with a revoked key', async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${base}/login`);
  await page.fill('#key', viewer.secret);
  await page.click('#sign-in');
  await page.waitForURL(`${base}/docs**`);
  const sid = (await ctx.cookies(base)).find((c) => c.name === 'strata_session')!.value;
  const cookie = `strata_session=${sid}`;
  // A forged sign-out: no token, or a cross-site Origin.
  expect(
    (
      await fetch(`${base}/logout`, {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'csrf=wrong',
      })
    ).status,
  ).toBe(403);
  expect(
    (
      await fetch(`${base}/logout`, {
        method: 'POST',
        headers: { cookie, origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
        body: '',
      })
    ).status,
  ).toBe(403);
  // A forged sign-in (login CSRF): no token from our form.
  const forged = await fetch(`${base}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `key=${viewer.secret}`,
    redirect: 'manual',
  });
  expect(forged.status).toBe(403);
  expect(forged.headers.get('set-cookie') ?? '').not.toMatch(/strata_session=[A-Za-z0-9_-]{20}/);
  expect(
    (
      await fetch(`${base}/login`, {
        method: 'POST',
        headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
        body: `key=${viewer.secret}`,
      })
    ).status,
  ).toBe(403);
  // An open redirect is not possible through next=.
  await page.goto(`${base}/login?next=${encodeURIComponent('//evil.example/x')}`);
  expect(await page.locator('a', { hasText: 'Continue' }).getAttribute('href')).toBe('/docs');
  // The real sign-out form works; the session is gone from the metastore and the run page asks to sign in again.
  expect(await page.locator('#who').textContent()).toContain(tenant);
  await page.click('#sign-out');
  await page.waitForURL(`${base}/login`);
  expect(
    (
      await stack.db.query('SELECT 1 FROM browser_sessions WHERE id_hash = $1', [
        createHash('sha256').update(sid).digest('hex'),
      ])
    ).rowCount,
  ).toBe(0);
  expect((await fetch(`${base}/api/v1/runs/${encodeURIComponent(runId)}`, { headers: { cookie } })).status).toBe(401);
  // Sign in again, then the key is revoked: the session ends with it.
  await page.fill('#key', viewer.secret);
  await page.click('#sign-in');
  await page.waitForURL(`${base}/docs**`);
  const sid2 = (await ctx.cookies(base)).find((c) => c.name === 'strata_session')!.value;
  expect(
    (await fetch(`${base}/api/v1/runs/${encodeURIComponent(runId)}`, { headers: { cookie: `strata_session=${sid2}` } }))
      .status,
  ).toBe(200);
  await revokeKey(stack.db, tenant, viewer.id);
  const after = await fetch(`${base}/api/v1/runs/${encodeURIComponent(runId)}`, {
    headers: { cookie: `strata_session=${sid2}` },
  });
  expect(after.status).toBe(401);
  expect((await after.json()).error).toMatch(/sign in again at \/login/);
  // A JSON client without a key still gets 401 JSON, not a redirect.
  const json = await fetch(`${base}/runs/${encodeURIComponent(runId)}`, { redirect: 'manual' });
  expect(json.status).toBe(401);
  await ctx.close();
});
