/**
 * Notifications against real receivers: an HTTP receiver in the test (checks the HMAC
 * signature, answers 500 once so the delivery is retried), a Slack-shaped receiver, and a
 * real SMTP server (mailpit) whose HTTP API the test reads. Runs go through the real
 * Temporal dev server and the metastore; deliveries are listed through the API.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelsFromEnv, type Channels } from '../../activities/notify/channels.js';
import type { DeliveryRecord, NotifyInput } from '../../schemas/notify.js';
import { createKey } from '../../store/keys.js';
import { listDeliveries } from '../../store/notifications.js';
import { startMailpit, type SmtpServer } from '../../workers/mailpit.js';
import { stackApi } from '../harness/api.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const SECRET = `whsec-${randomBytes(12).toString('hex')}`;
/** A token in the receiver's paths: it is part of the channels' URLs, a secret like Slack's hook paths. */
const PATH_TOKEN = randomBytes(8).toString('hex');
const SMTP_PASS = `pw-${randomBytes(6).toString('hex')}`;

let stack: TestStack;
let mail: SmtpServer;
let receiver: Server;
let base: string;
let channels: Channels;
let app: FastifyInstance;
const received: Received[] = [];
/** Paths that answer 500 this many more times. */
const failures = new Map<string, number>();
const key: Record<string, string> = {};
const RETRY = { initialMs: 200, maxAttempts: 4 };

beforeAll(async () => {
  mail = await startMailpit({ auth: { user: 'strata', pass: SMTP_PASS }, log: (m) => console.error(m) });
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const path = req.url ?? '';
      received.push({ path, headers: req.headers, body });
      const left = failures.get(path) ?? 0;
      if (left > 0) {
        failures.set(path, left - 1);
        res.writeHead(500).end('try again');
      } else if (path.includes('/down/')) res.writeHead(500).end('down');
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  // Workers read this object when they start, so the channels set below (they name the stack's tenant) reach them.
  const notify: NonNullable<Parameters<typeof testStack>[1]>['notify'] = {
    publicUrl: 'https://strata.example.test',
    uiUrl: 'https://temporal.example.test',
    namespace: 'default',
  };
  stack = await testStack('notify', { lake: 'file', notify });
  const t = stack.tenant;
  channels = channelsFromEnv({
    STRATA_NOTIFY_ONCALL: `${base}/hook/${PATH_TOKEN}`,
    STRATA_NOTIFY_ONCALL_SECRET: SECRET,
    STRATA_NOTIFY_ONCALL_TENANTS: t,
    STRATA_NOTIFY_TEAM_SLACK: `slack+${base}/slack/${PATH_TOKEN}`,
    STRATA_NOTIFY_TEAM_SLACK_TENANTS: t,
    STRATA_NOTIFY_DATA_MAIL: `smtp://strata:${SMTP_PASS}@127.0.0.1:${mail.smtpPort}?from=strata@example.test&to=data@example.test,ops@example.test`,
    STRATA_NOTIFY_DATA_MAIL_TENANTS: t,
    STRATA_NOTIFY_BROKEN: `${base}/down/${PATH_TOKEN}`,
    STRATA_NOTIFY_BROKEN_SECRET: SECRET,
    STRATA_NOTIFY_BROKEN_TENANTS: t,
    STRATA_NOTIFY_GLOBEX_HOOK: `${base}/globex/${PATH_TOKEN}`,
    STRATA_NOTIFY_GLOBEX_HOOK_SECRET: SECRET,
    STRATA_NOTIFY_GLOBEX_HOOK_TENANTS: 'globex',
  });
  notify.notifyChannels = channels;
  ({ app } = await stackApi(stack, { notifyChannels: channels, scheduleWatch: { everyMs: 200, retry: RETRY } }));
  key.own = (await createKey(stack.db, t, 'admin', 'notify-test')).secret;
  key.globex = (await createKey(stack.db, 'globex', 'admin', 'notify-globex')).secret;
});

afterAll(async () => {
  await app?.close();
  await stack?.close();
  await mail?.stop();
  await new Promise((r) => receiver?.close(r));
});

async function run(s: ReturnType<typeof spec>): Promise<string> {
  const h = await stack.runs.start({
    spec: s,
    tenant: stack.tenant,
    trigger: 'manual',
    options: { notifyRetry: RETRY },
  });
  await stack.client.workflow
    .getHandle(h.runId)
    .result()
    .catch(() => undefined);
  return h.runId;
}

async function settled(runId: string, n: number): Promise<DeliveryRecord[]> {
  let rows: DeliveryRecord[] = [];
  await waitFor(async () => {
    rows = await listDeliveries(stack.db, stack.tenant, runId);
    return rows.length === n && rows.every((r) => r.status !== 'pending');
  }, 120_000);
  return rows;
}

const byRule = (rows: DeliveryRecord[]) => Object.fromEntries(rows.map((r) => [`${r.rule}:${r.event}`, r]));

function verify(r: Received): boolean {
  const ts = String(r.headers['strata-timestamp']);
  const sig = String(r.headers['strata-signature']);
  const want = `v1=${createHmac('sha256', SECRET).update(`${ts}.${r.body}`).digest('hex')}`;
  return sig.length === want.length && timingSafeEqual(Buffer.from(sig), Buffer.from(want));
}

function withWorker<T>(fn: () => Promise<T>): Promise<T> {
  return stack.withWorker(fn);
}

describe('notifications', () => {
  it('a failed run notifies a signed webhook (retried after a 500), Slack and e-mail, once per rule and event', async () => {
    const s = spec(`
id: nightly_orders
notify:
  - { id: oncall, on: [failure, retry_exhausted], channel: oncall }
  - { on: [failure, success], channel: team_slack }
  - { on: [failure], channel: data_mail }
tasks:
  - { id: ok, kind: noop }
  - { id: load, kind: fail, message: "warehouse refused the load", needs: [ok], retry: { attempts: 2, initialInterval: 10ms } }
`);
    failures.set(`/hook/${PATH_TOKEN}`, 1);
    const before = received.length;
    const { runId, rows } = await withWorker(async () => {
      const runId = await run(s);
      return { runId, rows: await settled(runId, 4) };
    });
    const r = byRule(rows);
    expect(Object.keys(r).sort()).toEqual([
      'data_mail:failure',
      'oncall:failure',
      'oncall:retry_exhausted',
      'team_slack:failure',
    ]);
    for (const row of rows) expect(row.status, JSON.stringify(row)).toBe('delivered');
    expect(r['team_slack:failure'].channelType).toBe('slack');
    expect(r['data_mail:failure'].channelType).toBe('email');

    // Webhook: the first delivery answered 500 and was retried; every request carries a valid signature.
    const hooks = received.slice(before).filter((x) => x.path === `/hook/${PATH_TOKEN}`);
    expect(hooks.length).toBe(3);
    for (const h of hooks) expect(verify(h)).toBe(true);
    const retried = hooks.filter((h) => JSON.parse(h.body).event === hooks[0].headers['strata-event']);
    expect(retried.length).toBe(2);
    expect(retried[0].headers['strata-delivery']).toBe(retried[1].headers['strata-delivery']);
    expect(retried[0].body).toBe(retried[1].body);
    const first = r[`oncall:${String(hooks[0].headers['strata-event'])}`];
    expect(first.attempts).toBe(2);
    expect(first.responseStatus).toBe(200);
    const failure = JSON.parse(hooks.find((h) => h.headers['strata-event'] === 'failure')!.body);
    expect(failure).toMatchObject({
      event: 'failure',
      rule: 'oncall',
      tenant: stack.tenant,
      pipeline: 'nightly_orders',
      run: { id: runId, status: 'failed', trigger: 'manual' },
      failedTasks: [{ id: 'load', error: expect.stringContaining('warehouse refused the load') }],
      error: expect.stringContaining('warehouse refused the load'),
      links: {
        run: `https://strata.example.test/runs/${encodeURIComponent(runId)}`,
        temporal: `https://temporal.example.test/namespaces/default/workflows/${encodeURIComponent(runId)}`,
      },
    });
    const exhausted = JSON.parse(hooks.find((h) => h.headers['strata-event'] === 'retry_exhausted')!.body);
    expect(exhausted.retryExhausted).toEqual([{ task: 'load', attempts: 2 }]);
    // A tampered body does not verify.
    expect(verify({ ...hooks[0], body: hooks[0].body.replace('nightly_orders', 'nightly_orderz') })).toBe(false);

    // Slack: an incoming-webhook body (text + blocks with the links).
    const slack = received.slice(before).filter((x) => x.path === `/slack/${PATH_TOKEN}`);
    expect(slack.length).toBe(1);
    const sb = JSON.parse(slack[0].body);
    expect(sb.text).toBe(`Strata: nightly_orders (${stack.tenant}) failed`);
    expect(sb.blocks[0]).toMatchObject({ type: 'header', text: { type: 'plain_text' } });
    expect(sb.blocks[1].text.text).toContain('Failed task load: ');
    expect(sb.blocks[2].elements.map((e: { url: string }) => e.url)).toEqual([
      failure.links.run,
      failure.links.temporal,
    ]);

    // E-mail: read back from mailpit's API.
    let msgs: { ID: string; Subject: string; To: { Address: string }[] }[] = [];
    await waitFor(async () => {
      const res = await fetch(`${mail.httpUrl}/api/v1/messages`);
      msgs = ((await res.json()) as { messages: typeof msgs }).messages.filter((m) =>
        m.Subject.includes('nightly_orders'),
      );
      return msgs.length > 0;
    });
    expect(msgs.length).toBe(1);
    expect(msgs[0].Subject).toBe(`Strata: nightly_orders (${stack.tenant}) failed`);
    expect(msgs[0].To.map((t) => t.Address).sort()).toEqual(['data@example.test', 'ops@example.test']);
    const full = (await (await fetch(`${mail.httpUrl}/api/v1/message/${msgs[0].ID}`)).json()) as { Text: string };
    expect(full.Text).toContain(`Run: ${runId} (failed)`);
    expect(full.Text).toContain('Failed task load: ');
    expect(full.Text).toContain(`Run page: ${failure.links.run}`);

    // Listed in the API for the run's tenant; another tenant's key gets a 404.
    const own = await app.inject({
      method: 'GET',
      url: `/api/v1/runs/${encodeURIComponent(runId)}/notifications`,
      headers: { authorization: `Bearer ${key.own}` },
    });
    expect(own.statusCode).toBe(200);
    expect(
      own
        .json()
        .data.map((d: DeliveryRecord) => `${d.rule}:${d.event}:${d.status}`)
        .sort(),
    ).toEqual([
      'data_mail:failure:delivered',
      'oncall:failure:delivered',
      'oncall:retry_exhausted:delivered',
      'team_slack:failure:delivered',
    ]);
    const foreign = await app.inject({
      method: 'GET',
      url: `/api/v1/runs/${encodeURIComponent(runId)}/notifications`,
      headers: { authorization: `Bearer ${key.globex}` },
    });
    expect(foreign.statusCode).toBe(404);

    // A notifier started again for the same run (a replay, a retried run) sends nothing twice.
    const count = received.length;
    const again: NotifyInput = {
      run: {
        runId,
        workflowId: runId,
        pipelineId: 'nightly_orders',
        tenant: stack.tenant,
        trigger: 'manual',
        logicalDate: '2026-01-01T00:00:00Z',
      },
      rules: [{ id: 'oncall', on: ['failure'], channel: 'oncall' }],
      phase: 'end',
      outcome: { status: 'failed', exhausted: [], warned: [], failures: [] },
      retry: RETRY,
    };
    const res = await withWorker(() =>
      stack.client.workflow.execute('notifyRun', {
        workflowId: `${runId}/notify/again`,
        taskQueue: stack.taskQueue,
        args: [again],
      }),
    );
    expect(res).toEqual({ delivered: 1, failed: 0 });
    expect(received.length).toBe(count);
    expect((await listDeliveries(stack.db, stack.tenant, runId)).length).toBe(4);
  });

  it('a channel that keeps failing ends failed without touching the run, and no secret reaches history or errors', async () => {
    const s = spec(`
id: quiet_success
notify:
  - { id: pager, on: [success], channel: broken }
tasks:
  - { id: only, kind: noop }
`);
    const { runId, rows, status } = await withWorker(async () => {
      const runId = await run(s);
      const status = (await stack.client.workflow.getHandle(runId).describe()).status.name;
      return { runId, rows: await settled(runId, 1), status };
    });
    expect(status).toBe('COMPLETED');
    expect(rows[0]).toMatchObject({ rule: 'pager', event: 'success', status: 'failed', attempts: RETRY.maxAttempts });
    expect(rows[0].lastError).toBe('channel broken answered HTTP 500');
    const hist = await stack.client.workflow.getHandle(`${runId}/notify/end`).fetchHistory();
    const text = JSON.stringify(hist);
    for (const secret of [PATH_TOKEN, SECRET, SMTP_PASS, base]) expect(text).not.toContain(secret);
    const runHist = JSON.stringify(await stack.client.workflow.getHandle(runId).fetchHistory());
    for (const secret of [PATH_TOKEN, SECRET, SMTP_PASS]) expect(runHist).not.toContain(secret);
  });

  it('a run still running at its SLA notifies sla_missed while it runs', async () => {
    // The run waits for a marker the test writes only after the notification arrived: no race with the clock.
    const s = spec(`
id: slow_one
sla: 300ms
notify:
  - { id: late, on: [sla_missed], channel: oncall }
tasks:
  - { id: held, kind: s3.wait, path: markers/slow_one/_GO, pollInterval: 100ms, waitTimeout: 10m }
`);
    const before = received.length;
    const { rows, whileRunning, final } = await withWorker(async () => {
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { notifyRetry: RETRY },
      });
      let rows: DeliveryRecord[] = [];
      await waitFor(async () => {
        rows = await listDeliveries(stack.db, stack.tenant, h.runId);
        return rows.some((r) => r.status === 'delivered');
      }, 60_000);
      const whileRunning = (await stack.client.workflow.getHandle(h.runId).describe()).status.name;
      await stack.store!.putBytes('markers/slow_one/_GO', 'go');
      await stack.client.workflow.getHandle(h.runId).result();
      return { rows, whileRunning, final: await listDeliveries(stack.db, stack.tenant, h.runId) };
    });
    expect(whileRunning).toBe('RUNNING');
    expect(rows.map((r) => `${r.rule}:${r.event}:${r.status}`)).toEqual(['late:sla_missed:delivered']);
    expect(final).toHaveLength(1);
    const hook = received.slice(before).find((x) => x.headers['strata-event'] === 'sla_missed')!;
    expect(verify(hook)).toBe(true);
    expect(JSON.parse(hook.body)).toMatchObject({ event: 'sla_missed', run: { status: 'running' }, slaMs: 300 });
  });

  it('a run that ends within its SLA sends no sla_missed', async () => {
    const s = spec(`
id: fast_one
sla: 5s
notify:
  - { id: late, on: [sla_missed], channel: oncall }
tasks:
  - { id: quick, kind: noop }
`);
    const rows = await withWorker(async () => {
      const runId = await run(s);
      // The SLA notifier wakes at the deadline, sees the run finished, and ends without a delivery.
      await stack.client.workflow.getHandle(`${runId}/notify/sla`).result();
      return listDeliveries(stack.db, stack.tenant, runId);
    });
    expect(rows).toEqual([]);
  });

  it('registration refuses an unknown or another tenant’s channel, listing the tenant’s own', async () => {
    for (const channel of ['nope', 'globex_hook']) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/pipelines',
        headers: { authorization: `Bearer ${key.own}`, 'content-type': 'application/yaml' },
        payload: `id: bad_channel\nnotify:\n  - { on: [failure], channel: ${channel} }\ntasks:\n  - { id: a, kind: noop }\n`,
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().problems).toEqual([
        {
          path: 'notify[0].channel',
          message: expect.stringContaining(
            `unknown notification channel "${channel}" for tenant ${stack.tenant}: use one of broken, data_mail, oncall, team_slack`,
          ),
        },
      ]);
      expect(res.body).not.toContain(PATH_TOKEN);
    }
    const ok = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines',
      headers: { authorization: `Bearer ${key.own}`, 'content-type': 'application/yaml' },
      payload:
        'id: good_channel\nsla: 2h\nnotify:\n  - { on: [failure, quality_warning], channel: oncall }\ntasks:\n  - { id: a, kind: noop }\n',
    });
    expect(ok.statusCode).toBe(201);
    const bad = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines',
      headers: { authorization: `Bearer ${key.own}`, 'content-type': 'application/yaml' },
      payload: 'id: bad_event\nnotify:\n  - { on: [explodes], channel: oncall }\ntasks:\n  - { id: a, kind: noop }\n',
    });
    expect(bad.statusCode).toBe(400);
    expect(
      bad
        .json()
        .problems.map((p: { path: string }) => p.path)
        .sort(),
    ).toEqual(['notify[0].on[0]']);
    expect(bad.json().problems[0].message).toContain('an event is one of failure, success, retry_exhausted');
    const dup = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines',
      headers: { authorization: `Bearer ${key.own}`, 'content-type': 'application/yaml' },
      payload:
        'id: dup_rule\nnotify:\n  - { on: [failure], channel: oncall }\n  - { on: [success], channel: oncall }\ntasks:\n  - { id: a, kind: noop }\n',
    });
    expect(dup.statusCode).toBe(400);
    expect(dup.json().problems).toEqual([
      { path: 'notify[1].channel', message: expect.stringContaining('two rules are called "oncall" (also notify[0])') },
    ]);
  });
  it('a schedule that skips a fire time notifies schedule_missed, from Temporal’s own counters', async () => {
    const auth = { authorization: `Bearer ${key.own}` };
    const reg = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines',
      headers: { ...auth, 'content-type': 'application/yaml' },
      // Its run waits for a marker, so it is still running when the second fire comes, however slow the machine.
      payload:
        'id: sched_slow\ntasks:\n  - { id: held, kind: s3.wait, path: markers/sched/_GO, pollInterval: 100ms, waitTimeout: 10m }\n',
    });
    expect(reg.statusCode).toBe(201);
    const refused = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines/sched_slow/schedules',
      headers: auth,
      payload: { id: 'hourly', cron: '0 0 1 1 *', notify: [{ on: ['schedule_missed'], channel: 'globex_hook' }] },
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().problems[0].path).toBe('notify[0].channel');
    const wrongEvent = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines/sched_slow/schedules',
      headers: auth,
      payload: { id: 'hourly', cron: '0 0 1 1 *', notify: [{ on: ['failure'], channel: 'oncall' }] },
    });
    expect(wrongEvent.statusCode).toBe(400);
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/pipelines/sched_slow/schedules',
      headers: auth,
      payload: {
        id: 'hourly',
        cron: '0 0 1 1 *',
        overlap: 'skip',
        notify: [{ id: 'missed', on: ['schedule_missed'], channel: 'oncall' }],
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    const tid = `schedule/${stack.tenant}/sched_slow/hourly`;
    const watcher = stack.client.workflow.getHandle(`${tid}/watch`);
    const before = received.length;
    const rows = await withWorker(async () => {
      // The watcher's first check sets its baseline.
      await waitFor(async () =>
        (await watcher.fetchHistory()).events!.some((e) => e.activityTaskCompletedEventAttributes),
      );
      const sched = stack.client.schedule.getHandle(tid);
      await sched.trigger(ScheduleOverlapPolicy.SKIP);
      await waitFor(async () => (await sched.describe()).info.runningActions.length === 1);
      await sched.trigger(ScheduleOverlapPolicy.SKIP); // the first run still runs: Temporal skips this one
      await waitFor(async () => (await sched.describe()).info.numActionsSkippedOverlap === 1);
      let rows: DeliveryRecord[] = [];
      await waitFor(async () => {
        const res = await app.inject({
          method: 'GET',
          url: '/api/v1/pipelines/sched_slow/schedules/hourly/notifications',
          headers: auth,
        });
        rows = res.json().data;
        return rows.length === 1 && rows[0].status === 'delivered';
      }, 60_000);
      await stack.store!.putBytes('markers/sched/_GO', 'go');
      await waitFor(async () => (await sched.describe()).info.runningActions.length === 0, 60_000);
      return rows;
    });
    expect(rows[0]).toMatchObject({ rule: 'missed', event: 'schedule_missed', runId: `${tid}#1` });
    const hook = received.slice(before).find((x) => x.headers['strata-event'] === 'schedule_missed')!;
    expect(verify(hook)).toBe(true);
    expect(JSON.parse(hook.body)).toMatchObject({
      event: 'schedule_missed',
      pipeline: 'sched_slow',
      schedule: { id: 'hourly', skipped: 1, missed: 0 },
    });
    const del = await app.inject({
      method: 'DELETE',
      url: '/api/v1/pipelines/sched_slow/schedules/hourly',
      headers: auth,
    });
    expect(del.statusCode).toBe(204);
    expect((await watcher.describe()).status.name).toBe('TERMINATED');
  });

  it('a dataset written with failing warn checks notifies quality_warning, naming the task and checks', async () => {
    const s = spec(`
id: warned_nums
notify:
  - { id: quality, on: [quality_warning, failure], channel: oncall }
tasks:
  - id: make
    kind: sql
    layer: silver
    sql: SELECT 1 AS id UNION ALL SELECT -1 AS id
    output: silver.nums
    checks:
      - expect: "id > 0"
        severity: warn
`);
    const before = received.length;
    const { runId, rows } = await withWorker(async () => {
      const runId = await run(s);
      return { runId, rows: await settled(runId, 1) };
    });
    expect((await stack.runs.state(runId)).status).toBe('success');
    expect(rows.map((r) => `${r.rule}:${r.event}:${r.status}`)).toEqual(['quality:quality_warning:delivered']);
    const hook = received.slice(before).find((x) => x.headers['strata-event'] === 'quality_warning')!;
    expect(verify(hook)).toBe(true);
    const body = JSON.parse(hook.body);
    expect(body.run.status).toBe('success');
    expect(body.qualityWarnings).toEqual([{ task: 'make', checks: [expect.any(String)] }]);
  });

  it('reconciliation mappings notify their own rules (matched, differs, failed) and a warn mapping that differs raises the run’s quality_warning with its counts', async () => {
    // Left and right differ in one changed, one only-left and one only-right row (files in the tenant's folder).
    await mkdir(path.join(stack.tenantRoot, 'recon_notify'), { recursive: true });
    await writeFile(path.join(stack.tenantRoot, 'recon_notify/left.csv'), 'id,amount\n1,10\n2,20\n3,30\n');
    await writeFile(path.join(stack.tenantRoot, 'recon_notify/right.csv'), 'id,amount\n1,10\n2,25\n4,40\n');
    const s = spec(`
id: recon_notify
notify:
  - { id: quality, on: [quality_warning], channel: oncall }
tasks:
  - { id: land, kind: noop }
reconciliations:
  - name: orders_mig
    left: recon_notify/left.csv
    right: recon_notify/right.csv
    key: [id]
    policy: warn
    notify:
      - { id: owner, on: [quality_warning, success, failure], channel: oncall }
  - name: orders_same
    left: recon_notify/left.csv
    right: recon_notify/left.csv
    key: [id]
    notify: [{ on: [success, quality_warning], channel: data_mail }]
  - name: orders_gate
    left: recon_notify/left.csv
    right: recon_notify/right.csv
    key: [id]
    policy: fail
    notify: [{ id: gate, on: [failure], channel: team_slack }]
  - name: orders_silent
    left: recon_notify/left.csv
    right: recon_notify/right.csv
    key: [id]
    notify: [{ id: only_failures, on: [failure], channel: oncall }]
`);
    const before = received.length;
    const { runId, rows } = await withWorker(async () => {
      const runId = await run(s);
      return { runId, rows: await settled(runId, 4) };
    });
    const st = await stack.runs.state(runId);
    expect(st.status).toBe('failed');
    expect(st.tasks['reconcile-orders_gate']).toMatchObject({ status: 'failed', errorType: 'DatasetsDiffer' });
    expect(rows.map((r) => `${r.rule}:${r.event}:${r.status}`).sort()).toEqual([
      'orders_gate:gate:failure:delivered',
      'orders_mig:owner:quality_warning:delivered',
      'orders_same:data_mail:success:delivered',
      'quality:quality_warning:delivered',
    ]);
    const counts = { matched: 1, changed: 1, onlyLeft: 1, onlyRight: 1 };
    const hooks = received.slice(before).filter((x) => x.path === `/hook/${PATH_TOKEN}`);
    expect(hooks).toHaveLength(2);
    for (const h of hooks) expect(verify(h)).toBe(true);
    const bodies = hooks.map((h) => JSON.parse(h.body));
    // The pipeline's rule: the run's quality warning names the mapping and its counts.
    const runWarning = bodies.find((b) => b.rule === 'quality');
    expect(runWarning).toMatchObject({ event: 'quality_warning', run: { id: runId, status: 'failed' } });
    expect(runWarning.qualityWarnings).toEqual([
      {
        task: 'reconcile-orders_mig',
        mapping: 'orders_mig',
        checks: ['mapping orders_mig differs: 1 changed, 1 only left, 1 only right'],
        differences: 3,
        counts,
      },
    ]);
    // The mapping's own rule: what its comparison found.
    const own = bodies.find((b) => b.rule === 'orders_mig:owner');
    expect(own).toMatchObject({
      event: 'quality_warning',
      reconciliation: {
        task: 'reconcile-orders_mig',
        mapping: 'orders_mig',
        policy: 'warn',
        status: 'success',
        differences: 3,
        counts,
      },
    });
    expect(own.qualityWarnings).toBeUndefined();
    // Slack: the gate's failure, with the counts its error gives.
    const slack = received.slice(before).filter((x) => x.path === `/slack/${PATH_TOKEN}`);
    expect(slack).toHaveLength(1);
    const sb = JSON.parse(slack[0].body);
    expect(sb.text).toBe(`Strata: reconciliation orders_gate of recon_notify (${stack.tenant}) failed`);
    expect(sb.blocks[1].text.text).toContain(
      'Reconciliation orders_gate (task reconcile-orders_gate, policy fail): 1 changed, 1 only left, 1 only right',
    );
    // E-mail: the mapping that matched.
    let msgs: { ID: string; Subject: string }[] = [];
    await waitFor(async () => {
      const res = await fetch(`${mail.httpUrl}/api/v1/messages`);
      msgs = ((await res.json()) as { messages: typeof msgs }).messages.filter((m) =>
        m.Subject.includes('recon_notify'),
      );
      return msgs.length > 0;
    });
    expect(msgs.map((m) => m.Subject)).toEqual([
      `Strata: reconciliation orders_same of recon_notify (${stack.tenant}) found no differences`,
    ]);
    const full = (await (await fetch(`${mail.httpUrl}/api/v1/message/${msgs[0].ID}`)).json()) as { Text: string };
    expect(full.Text).toContain(
      'Reconciliation orders_same (task reconcile-orders_same, policy record): no differences',
    );
  });

  it('registration checks a mapping’s channels and events where the mapping declares them', async () => {
    const register = (payload: string) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/pipelines',
        headers: { authorization: `Bearer ${key.own}`, 'content-type': 'application/yaml' },
        payload,
      });
    const base = `id: recon_rules\ntasks:\n  - { id: a, kind: noop }\nreconciliations:\n  - { name: m, left: l.csv, right: r.csv, key: [id], notify: [`;
    const foreign = await register(`${base}{ on: [failure], channel: globex_hook }] }\n`);
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json().problems).toEqual([
      {
        path: 'reconciliations[0].notify[0].channel',
        message: expect.stringContaining(`unknown notification channel "globex_hook" for tenant ${stack.tenant}`),
      },
    ]);
    expect(foreign.body).not.toContain(PATH_TOKEN);
    const wrong = await register(`${base}{ on: [cancelled], channel: oncall }] }\n`);
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().problems).toEqual([
      {
        path: 'reconciliations[0].notify[0].on[0]',
        message: expect.stringContaining('"cancelled" is not an event here: use failure, success, quality_warning'),
      },
    ]);
    const ok = await register(`${base}{ on: [failure, quality_warning], channel: oncall }] }\n`);
    expect(ok.statusCode, ok.body).toBe(201);
  });

  it('a cancelled run notifies the rules that name cancelled, and only those', async () => {
    const s = spec(`
id: cancel_me
notify:
  - { id: stopped, on: [cancelled], channel: oncall }
  - { id: ends, on: [failure, success], channel: team_slack }
tasks:
  - { id: held, kind: s3.wait, path: markers/cancel_me/_NEVER, pollInterval: 100ms, waitTimeout: 10m }
`);
    const before = received.length;
    const { runId, rows, notifier } = await withWorker(async () => {
      const h = await stack.runs.start({
        spec: s,
        tenant: stack.tenant,
        trigger: 'manual',
        options: { notifyRetry: RETRY },
      });
      await waitFor(async () => (await stack.runs.state(h.runId)).tasks.held?.status === 'running', 60_000);
      await stack.runs.cancel(h.runId);
      await stack.client.workflow
        .getHandle(h.runId)
        .result()
        .catch(() => undefined);
      const notifier = await stack.client.workflow.getHandle(`${h.runId}/notify/end`).result();
      return { runId: h.runId, rows: await settled(h.runId, 1), notifier };
    });
    expect((await stack.client.workflow.getHandle(runId).describe()).status.name).toBe('CANCELLED');
    expect(notifier).toEqual({ delivered: 1, failed: 0 });
    expect(rows.map((r) => `${r.rule}:${r.event}:${r.status}`)).toEqual(['stopped:cancelled:delivered']);
    const hooks = received.slice(before).filter((x) => x.headers['strata-event'] === 'cancelled');
    expect(hooks).toHaveLength(1);
    expect(verify(hooks[0])).toBe(true);
    expect(JSON.parse(hooks[0].body)).toMatchObject({
      event: 'cancelled',
      rule: 'stopped',
      pipeline: 'cancel_me',
      run: { id: runId, status: 'cancelled' },
    });
    expect(received.slice(before).filter((x) => x.path === `/slack/${PATH_TOKEN}`)).toEqual([]);
  });

  it('the worker holds a run to its own tenant’s channels, whatever its spec names', async () => {
    // A spec run directly (not registered through the API) naming another tenant's channel.
    const s = spec(`
id: borrowed
notify:
  - { id: theirs, on: [success], channel: globex_hook }
tasks:
  - { id: only, kind: noop }
`);
    const before = received.length;
    const rows = await withWorker(async () => settled(await run(s), 1));
    expect(rows[0]).toMatchObject({ rule: 'theirs', status: 'failed', channelType: 'unknown' });
    expect(rows[0].lastError).toContain(`unknown notification channel "globex_hook" for tenant ${stack.tenant}`);
    expect(received.slice(before).filter((x) => x.path.startsWith('/globex/'))).toEqual([]);
  });

  it('the OpenAPI document lists the notification routes with their errors', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    for (const p of ['/api/v1/runs/{run}/notifications', '/api/v1/pipelines/{id}/schedules/{sid}/notifications']) {
      expect(Object.keys(doc.paths[p].get.responses)).toEqual(expect.arrayContaining(['200', '401', '404']));
    }
  });
});
