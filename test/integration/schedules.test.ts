/**
 * Schedules say what Temporal will do: previews come from Temporal's own plan (DST gaps
 * skipped, startAt applied), and a backfill reports exactly the runs Temporal starts — or
 * is refused, saying why — across DST changes in both directions.
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SchedulesService, previewFires } from '../../client/schedules.js';
import type { ScheduleBody } from '../../schemas/api.js';
import { registerPipeline } from '../../store/pipelines.js';
import { spec, waitFor } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

const SCHEDULED_BY = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);
const SCHEDULED_AT = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

let stack: TestStack;
let svc: SchedulesService;
const p = spec({ id: 'nightly', tasks: [{ id: 'a', kind: 'noop' }] });
let version: number;

beforeAll(async () => {
  stack = await testStack('schedules');
  svc = new SchedulesService(stack.client, stack.db, stack.taskQueue);
  version = (await registerPipeline(stack.db, stack.tenant, p)).version;
});
afterAll(async () => {
  // The backfilled runs wait on a queue no worker serves: end them.
  for await (const ex of stack.client.workflow.list({
    query: `WorkflowType = 'pipelineRun' AND ExecutionStatus = 'Running' AND TaskQueue = '${stack.taskQueue}'`,
  }))
    await stack.client.workflow
      .getHandle(ex.workflowId, ex.runId)
      .terminate('test over')
      .catch(() => undefined);
  await stack?.close();
});

const body = (id: string, extra: Partial<ScheduleBody> = {}): ScheduleBody => ({
  id,
  cron: '30 2 * * *',
  timezone: 'America/New_York',
  overlap: 'allow_all',
  catchupWindow: '1d',
  paused: false,
  pauseOnFailure: false,
  ...extra,
});

/** The scheduled times of the runs Temporal actually started for a schedule. */
async function startedTimes(scheduleId: string): Promise<string[]> {
  const out: string[] = [];
  for await (const ex of stack.client.workflow.list({ query: `TemporalScheduledById = '${scheduleId}'` })) {
    const at = ex.typedSearchAttributes.get(SCHEDULED_AT);
    if (at && ex.typedSearchAttributes.get(SCHEDULED_BY) === scheduleId) out.push(new Date(at).toISOString());
  }
  return out.sort();
}

describe('schedules say what Temporal will do', () => {
  it('previews fire times from Temporal’s own plan: the 02:30 that spring-forward skips is not listed', async () => {
    const def = body('spring-preview', { startAt: '2027-03-12T00:00:00Z' });
    const created = await svc.create(stack.tenant, p, version, def);
    // US clocks spring forward on 2027-03-14: 02:30 New York does not exist that day.
    expect(created.nextFires).toEqual([
      '2027-03-12T07:30:00.000Z',
      '2027-03-13T07:30:00.000Z',
      '2027-03-15T06:30:00.000Z',
      '2027-03-16T06:30:00.000Z',
      '2027-03-17T06:30:00.000Z',
    ]);
    expect((await svc.get(stack.tenant, p.id, 'spring-preview', 3)).nextFires).toEqual(created.nextFires.slice(0, 3));
    // cron-parser alone (what previews used before) lists a fire on the skipped day.
    const { id: _id, ...rest } = def;
    expect(previewFires(rest, 5, new Date('2027-03-12T00:00:00Z')).some((t) => t.startsWith('2027-03-14'))).toBe(true);
  });

  it.each([
    ['spring-forward', '2026-03-07T00:00:00Z', '2026-03-10T00:00:00Z'],
    ['fall-back', '2026-10-31T00:00:00Z', '2026-11-03T00:00:00Z'],
  ])('a backfill across %s reports exactly the runs Temporal starts', async (name, from, to) => {
    const id = `bf-${name}`;
    await svc.create(stack.tenant, p, version, body(id, { cron: ['30 1 * * *', '30 2 * * *'], paused: true }));
    const temporalId = svc.temporalId(stack.tenant, p.id, id);
    const bf = await svc.backfill(stack.tenant, p.id, id, from, to, 'allow_all');
    expect(bf.runs).toBe(bf.logicalDates.length);
    await waitFor(async () => (await startedTimes(temporalId)).length >= bf.runs, 30_000);
    await new Promise((r) => setTimeout(r, 1000)); // nothing more arrives
    expect(await startedTimes(temporalId)).toEqual(bf.logicalDates);
    if (name === 'spring-forward') {
      // 01:30 on every day; 02:30 on the 7th (EST) and 9th (EDT), none on the 8th.
      expect(bf.logicalDates).toEqual([
        '2026-03-07T06:30:00.000Z',
        '2026-03-07T07:30:00.000Z',
        '2026-03-08T06:30:00.000Z',
        '2026-03-09T05:30:00.000Z',
        '2026-03-09T06:30:00.000Z',
      ]);
    } else {
      expect(bf.logicalDates.filter((t) => t.startsWith('2026-10-31'))).toEqual([
        '2026-10-31T05:30:00.000Z',
        '2026-10-31T06:30:00.000Z',
      ]);
      expect(bf.logicalDates.filter((t) => t.startsWith('2026-11-02'))).toEqual([
        '2026-11-02T06:30:00.000Z',
        '2026-11-02T07:30:00.000Z',
      ]);
    }
  });

  it('refuses a backfill Temporal would start nothing for, or could drop runs of, saying why', async () => {
    await svc.create(stack.tenant, p, version, body('late', { startAt: '2027-01-10T00:00:00Z' }));
    await expect(
      svc.backfill(stack.tenant, p.id, 'late', '2027-01-01T00:00:00Z', '2027-01-05T00:00:00Z', 'allow_all'),
    ).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining(
        "Temporal would start no runs: the range ends before the schedule's startAt (2027-01-10T00:00:00.000Z)",
      ),
    });
    await expect(
      svc.backfill(stack.tenant, p.id, 'late', '2027-01-11T00:00:00Z', '2027-01-11T05:00:00Z', 'allow_all'),
    ).rejects.toMatchObject({ status: 400, message: expect.stringContaining('does not fire between') });
    await expect(
      svc.backfill(stack.tenant, p.id, 'late', '2027-01-11T00:00:00Z', '2027-01-14T00:00:00Z', 'skip'),
    ).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('use "allow_all" (the default) or "buffer_all"'),
    });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await startedTimes(svc.temporalId(stack.tenant, p.id, 'late'))).toEqual([]);
    // Within startAt it runs, and says exactly which.
    const ok = await svc.backfill(
      stack.tenant,
      p.id,
      'late',
      '2027-01-09T00:00:00Z',
      '2027-01-12T00:00:00Z',
      'buffer_all',
    );
    expect(ok.logicalDates).toEqual(['2027-01-10T07:30:00.000Z', '2027-01-11T07:30:00.000Z']);
  });
});
