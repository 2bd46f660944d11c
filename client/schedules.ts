/**
 * Pipeline schedules as Temporal Schedules. Cron is checked (and explained) with
 * cron-parser; what Temporal will do — the preview of fire times, the runs a backfill
 * starts — is asked of Temporal itself (ListScheduleMatchingTimes), so DST changes,
 * startAt and endAt are applied exactly as Temporal applies them. A scheduled run's logical
 * date is the time it was scheduled for, backfills included.
 */
import { pipelineRun } from '../workflows/pipeline.js';
import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowNotFoundError,
  type Client,
  type ScheduleOptions,
} from '@temporalio/client';
import { ruleRefs, type ScheduleWatchInput } from '../schemas/notify.js';
import { msToTs, tsToMs } from '@temporalio/common/lib/time.js';
import { CronExpressionParser } from 'cron-parser';
import { toMs } from '../schemas/duration.js';
import type { ScheduleBody } from '../schemas/api.js';
import { resolveParams, type PipelineSpec } from '../schemas/pipeline.js';
import type { PipelineRunInput } from '../schemas/run.js';
import type { Db } from '../store/db.js';
import { withTenant } from './tenant-scope.js';
import { contentHash } from '../store/pipelines.js';
import { RequestError } from '../schemas/errors.js';
import { SA_PIPELINE, SA_TENANT, SA_TRIGGER } from '../schemas/workflow-ids.js';
import { defaultRunOptions, specHash } from './runs.js';

const OVERLAP: Record<ScheduleBody['overlap'], ScheduleOverlapPolicy> = {
  skip: ScheduleOverlapPolicy.SKIP,
  buffer_one: ScheduleOverlapPolicy.BUFFER_ONE,
  buffer_all: ScheduleOverlapPolicy.BUFFER_ALL,
  cancel_other: ScheduleOverlapPolicy.CANCEL_OTHER,
  allow_all: ScheduleOverlapPolicy.ALLOW_ALL,
};

export type ScheduleDef = Omit<ScheduleBody, 'id'>;

export function checkSchedule(def: ScheduleDef): void {
  const problems: { path: string; message: string }[] = [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: def.timezone });
  } catch {
    problems.push({
      path: 'timezone',
      message: `unknown time zone "${def.timezone}": use an IANA name such as UTC or Europe/Paris`,
    });
  }
  const crons = Array.isArray(def.cron) ? def.cron : [def.cron];
  crons.forEach((c, i) => {
    const fields = c.trim().split(/\s+/).length;
    if (fields !== 5)
      problems.push({
        path: Array.isArray(def.cron) ? `cron[${i}]` : 'cron',
        message: `"${c}" has ${fields} fields: write 5 (minute hour day-of-month month day-of-week), e.g. "30 2 * * *"`,
      });
    else
      try {
        CronExpressionParser.parse(c, { tz: 'UTC' });
      } catch (e) {
        problems.push({
          path: Array.isArray(def.cron) ? `cron[${i}]` : 'cron',
          message: `"${c}" is not a valid cron expression: ${(e as Error).message}`,
        });
      }
  });
  if (def.startAt && def.endAt && Date.parse(def.startAt) >= Date.parse(def.endAt))
    problems.push({ path: 'endAt', message: 'endAt must be after startAt' });
  if (problems.length) throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
}

/**
 * The next n fire times by cron-parser (ISO, UTC). Only an estimate: it knows nothing of
 * how Temporal treats DST changes. Previews and backfills ask Temporal (SchedulesService).
 */
export function previewFires(def: ScheduleDef, n: number, from = new Date()): string[] {
  const crons = Array.isArray(def.cron) ? def.cron : [def.cron];
  const start = def.startAt && Date.parse(def.startAt) > from.getTime() ? new Date(def.startAt) : from;
  const out = new Set<number>();
  for (const c of crons) {
    const it = CronExpressionParser.parse(c, { tz: def.timezone, currentDate: start });
    for (let i = 0; i < n; i++) out.add(it.next().getTime());
  }
  return [...out]
    .sort((a, b) => a - b)
    .filter((t) => !def.endAt || t <= Date.parse(def.endAt))
    .slice(0, n)
    .map((t) => new Date(t).toISOString());
}

export class SchedulesService {
  constructor(
    readonly client: Client,
    readonly db: Db,
    readonly taskQueue: string,
    /** The schedule watcher's check interval (default 1 minute) and delivery retries (tests: milliseconds). */
    readonly watch: { everyMs?: number; retry?: ScheduleWatchInput['retry'] } = {},
  ) {}

  /**
   * The schedule's `schedule_missed` watcher (workflows/schedule-watch.ts): started, or
   * restarted with the new rules, when the schedule has rules; ended when it has none.
   */
  private async syncWatch(tenant: string, pipelineId: string, id: string, temporalId: string, def: ScheduleDef) {
    const workflowId = `${temporalId}/watch`;
    const rules = ruleRefs(def.notify);
    if (!rules.length) {
      await this.stopWatch(temporalId);
      return;
    }
    const input: ScheduleWatchInput = {
      tenant,
      pipelineId,
      schedule: id,
      scheduleId: temporalId,
      rules,
      everyMs: this.watch.everyMs ?? 60_000,
      ...(this.watch.retry ? { retry: this.watch.retry } : {}),
    };
    await this.client.workflow.start('scheduleWatch', {
      workflowId,
      taskQueue: this.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'TERMINATE_EXISTING',
      staticSummary: `watches schedule ${id} of ${pipelineId} for missed fire times`,
    });
  }

  private async stopWatch(temporalId: string) {
    await this.client.workflow
      .getHandle(`${temporalId}/watch`)
      .terminate('the schedule has no schedule_missed rules any more')
      .catch((e) => {
        if (!(e instanceof WorkflowNotFoundError)) throw e;
      });
  }

  temporalId(tenant: string, pipelineId: string, id: string) {
    return `schedule/${tenant}/${pipelineId}/${id}`;
  }

  private options(tenant: string, spec: PipelineSpec, version: number, id: string, def: ScheduleDef): ScheduleOptions {
    const { params, problems } = resolveParams(
      spec,
      Object.fromEntries(Object.entries(def.params ?? {}).map(([k, v]) => [k, String(v)])),
    );
    if (problems.length)
      throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
    // The spec by reference: a schedule's action (and every run it starts) stays small at any pipeline size.
    const specRef = { tenant, pipelineId: spec.id, hash: contentHash(spec), version, tasks: spec.tasks.length };
    const input: PipelineRunInput = {
      specRef,
      tenant,
      trigger: 'schedule',
      params,
      pipelineVersion: version,
      specVersion: specHash(spec),
      options: defaultRunOptions(),
    };
    return {
      scheduleId: this.temporalId(tenant, spec.id, id),
      spec: {
        cronExpressions: Array.isArray(def.cron) ? def.cron : [def.cron],
        timezone: def.timezone,
        jitter: def.jitter !== undefined ? toMs(def.jitter) : undefined,
        startAt: def.startAt ? new Date(def.startAt) : undefined,
        endAt: def.endAt ? new Date(def.endAt) : undefined,
      },
      action: {
        type: 'startWorkflow',
        workflowType: pipelineRun,
        workflowId: `pipeline/${tenant}/${spec.id}/schedule-${id}`,
        taskQueue: this.taskQueue,
        args: [input],
        typedSearchAttributes: [
          { key: SA_PIPELINE, value: spec.id },
          { key: SA_TENANT, value: tenant },
          { key: SA_TRIGGER, value: 'schedule' },
        ],
        memo: { pipeline: spec.id, pipelineVersion: version, schedule: id },
        staticSummary: `${spec.id} (schedule ${id})`,
      },
      policies: {
        overlap: OVERLAP[def.overlap],
        catchupWindow: toMs(def.catchupWindow),
        pauseOnFailure: def.pauseOnFailure,
      },
      state: { paused: def.paused, note: def.note },
    };
  }

  async create(tenant: string, spec: PipelineSpec, version: number, body: ScheduleBody) {
    const { id, ...def } = body;
    checkSchedule(def);
    const exists = await this.db.query('SELECT 1 FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [
      tenant,
      spec.id,
      id,
    ]);
    if (exists.rowCount)
      throw new RequestError(
        `schedule "${id}" already exists for pipeline ${spec.id}: PATCH it or pick another id`,
        409,
      );
    const opts = this.options(tenant, spec, version, id, def);
    await withTenant(tenant, () => this.client.schedule.create(opts)); // a schedule's own payloads name no workflow
    try {
      await this.db.query(
        'INSERT INTO schedules (tenant, pipeline_id, id, temporal_id, definition) VALUES ($1, $2, $3, $4, $5)',
        [tenant, spec.id, id, opts.scheduleId, JSON.stringify(def)],
      );
    } catch (e) {
      await this.client.schedule
        .getHandle(opts.scheduleId)
        .delete()
        .catch(() => {}); // nothing half-written
      throw e;
    }
    await this.syncWatch(tenant, spec.id, id, opts.scheduleId, def);
    return this.get(tenant, spec.id, id);
  }

  async row(tenant: string, pipelineId: string, id: string) {
    const r = (
      await this.db.query<{ id: string; temporal_id: string; definition: ScheduleDef }>(
        'SELECT id, temporal_id, definition FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3',
        [tenant, pipelineId, id],
      )
    ).rows[0];
    if (!r) throw new RequestError(`no schedule "${id}" on pipeline ${pipelineId}`, 404);
    return r;
  }

  async list(tenant: string, pipelineId: string) {
    const rows = (
      await this.db.query<{ id: string }>(
        'SELECT id FROM schedules WHERE tenant = $1 AND pipeline_id = $2 ORDER BY id',
        [tenant, pipelineId],
      )
    ).rows;
    return Promise.all(rows.map((r) => this.get(tenant, pipelineId, r.id)));
  }

  async get(tenant: string, pipelineId: string, id: string, previewCount = 5) {
    const r = await this.row(tenant, pipelineId, id);
    let paused: boolean | undefined;
    let recent: { scheduledAt: string; workflowId: string }[] = [];
    try {
      const d = await this.client.schedule.getHandle(r.temporal_id).describe();
      paused = d.state.paused;
      recent = d.info.recentActions.map((a) => ({
        scheduledAt: a.scheduledAt.toISOString(),
        workflowId: a.action.workflow.workflowId,
      }));
    } catch (e) {
      if (!(e instanceof ScheduleNotFoundError)) throw e;
    }
    const nextFires = paused === undefined ? [] : await this.nextFires(r.temporal_id, previewCount);
    return { id, pipelineId, ...r.definition, paused: paused ?? r.definition.paused, nextFires, recentRuns: recent };
  }

  /** The times Temporal's plan for the schedule matches in [from, to) (ISO, UTC), in order. */
  async matchingTimes(temporalId: string, from: Date, to: Date): Promise<string[]> {
    const r = await this.client.workflowService.listScheduleMatchingTimes({
      namespace: this.client.options.namespace,
      scheduleId: temporalId,
      startTime: msToTs(from.getTime() - 1000),
      endTime: msToTs(to.getTime() + 1000),
    });
    return (r.startTime ?? [])
      .map((t) => tsToMs(t))
      .filter((t) => t >= from.getTime() && t < to.getTime())
      .sort((a, b) => a - b)
      .map((t) => new Date(t).toISOString());
  }

  /** The next n times Temporal will fire the schedule (paused or not), from its own plan: DST gaps skipped, startAt/endAt applied. */
  async nextFires(temporalId: string, n: number, from = new Date()): Promise<string[]> {
    let out: string[] = [];
    // Widen the window until n fires are found (a yearly cron needs years; an every-minute one, minutes).
    for (let days = 1; days <= 4 * 3660; days *= 4) {
      out = await this.matchingTimes(temporalId, from, new Date(from.getTime() + days * 86_400_000));
      if (out.length >= n) break;
    }
    return out.slice(0, n);
  }

  async update(tenant: string, spec: PipelineSpec, version: number, id: string, patch: Partial<ScheduleDef>) {
    const r = await this.row(tenant, spec.id, id);
    const def = { ...r.definition, ...patch };
    checkSchedule(def);
    const opts = this.options(tenant, spec, version, id, def);
    await withTenant(tenant, () =>
      this.client.schedule.getHandle(r.temporal_id).update((prev) => ({
        ...prev,
        spec: opts.spec,
        action: opts.action,
        policies: opts.policies,
        state: { ...prev.state, paused: patch.paused ?? prev.state.paused },
      })),
    );
    await this.db.query(
      'UPDATE schedules SET definition = $4, updated_at = now() WHERE tenant = $1 AND pipeline_id = $2 AND id = $3',
      [tenant, spec.id, id, JSON.stringify(def)],
    );
    if ('notify' in patch) await this.syncWatch(tenant, spec.id, id, r.temporal_id, def);
    return this.get(tenant, spec.id, id);
  }

  /** A new pipeline version: every schedule of the pipeline runs it from now on. */
  async retarget(tenant: string, spec: PipelineSpec, version: number) {
    const rows = (
      await this.db.query<{ id: string }>('SELECT id FROM schedules WHERE tenant = $1 AND pipeline_id = $2', [
        tenant,
        spec.id,
      ])
    ).rows;
    for (const r of rows) await this.update(tenant, spec, version, r.id, {});
  }

  async remove(tenant: string, pipelineId: string, id: string) {
    const r = await this.row(tenant, pipelineId, id);
    await this.client.schedule
      .getHandle(r.temporal_id)
      .delete()
      .catch((e) => {
        if (!(e instanceof ScheduleNotFoundError)) throw e;
      });
    await this.stopWatch(r.temporal_id);
    await this.db.query('DELETE FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [
      tenant,
      pipelineId,
      id,
    ]);
  }

  async setPaused(tenant: string, pipelineId: string, id: string, paused: boolean) {
    const r = await this.row(tenant, pipelineId, id);
    const h = this.client.schedule.getHandle(r.temporal_id);
    if (paused) await h.pause('paused through the Strata API');
    else await h.unpause('unpaused through the Strata API');
    await this.db.query(
      `UPDATE schedules SET definition = jsonb_set(definition, '{paused}', $4::jsonb), updated_at = now() WHERE tenant = $1 AND pipeline_id = $2 AND id = $3`,
      [tenant, pipelineId, id, JSON.stringify(paused)],
    );
  }

  async trigger(tenant: string, pipelineId: string, id: string) {
    const r = await this.row(tenant, pipelineId, id);
    await this.client.schedule.getHandle(r.temporal_id).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  }

  /**
   * One run per time Temporal's plan fires in [from, to), each with its own logical date,
   * and the answer lists exactly those. Refused (400, saying why) when Temporal would start
   * none (before startAt, after endAt, no fire in the range), or when the overlap policy
   * could drop some of them (skip, buffer_one, cancel_other depend on how long runs take).
   * A paused schedule still runs a backfill (Temporal's rule).
   */
  async backfill(
    tenant: string,
    pipelineId: string,
    id: string,
    from: string,
    to: string,
    overlap: ScheduleBody['overlap'],
  ) {
    const r = await this.row(tenant, pipelineId, id);
    const start = new Date(from);
    const end = new Date(to);
    if (start.getTime() >= end.getTime()) throw new RequestError('backfill: "to" must be after "from"', 400);
    if (overlap !== 'allow_all' && overlap !== 'buffer_all')
      throw new RequestError(
        `backfill: with overlap "${overlap}" Temporal may skip or cancel some of the backfilled runs, depending on how long each takes, so no one can say which will run: use "allow_all" (the default) or "buffer_all"`,
        400,
      );
    const fires = await this.matchingTimes(r.temporal_id, start, end);
    if (fires.length >= 1000)
      throw new RequestError('backfill covers 1,000 runs or more: split it into smaller ranges', 400);
    if (!fires.length) {
      const def = r.definition;
      const why =
        def.startAt && end.getTime() <= Date.parse(def.startAt)
          ? `the range ends before the schedule's startAt (${new Date(def.startAt).toISOString()})`
          : def.endAt && start.getTime() >= Date.parse(def.endAt)
            ? `the range begins after the schedule's endAt (${new Date(def.endAt).toISOString()})`
            : `the schedule does not fire between ${start.toISOString()} and ${end.toISOString()}${def.startAt || def.endAt ? ' within its startAt/endAt' : ''}`;
      throw new RequestError(`backfill: Temporal would start no runs: ${why}; pick a range where it fires`, 400);
    }
    // Temporal's backfill range is exclusive at the start and inclusive at the end: shift both by 1 ms for [from, to).
    await this.client.schedule
      .getHandle(r.temporal_id)
      .backfill([
        { start: new Date(start.getTime() - 1), end: new Date(end.getTime() - 1), overlap: OVERLAP[overlap] },
      ]);
    return { runs: fires.length, logicalDates: fires };
  }
}
