/**
 * Pipeline schedules as Temporal Schedules. Cron is checked with cron-parser (and the
 * preview of fire times uses it too); Temporal fires the runs. A scheduled run's logical
 * date is the time it was scheduled for, backfills included.
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { CronExpressionParser } from 'cron-parser';
import { toMs } from '../schemas/duration.js';
import type { ScheduleBody } from '../schemas/api.js';
import { resolveParams, type PipelineSpec } from '../schemas/pipeline.js';
import type { PipelineRunInput } from '../schemas/run.js';
import type { Db } from '../store/db.js';
import { contentHash } from '../store/pipelines.js';
import { RequestError, SA_PIPELINE, SA_TENANT, SA_TRIGGER, specHash } from './runs-service.js';

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
    problems.push({ path: 'timezone', message: `unknown time zone "${def.timezone}": use an IANA name such as UTC or Europe/Paris` });
  }
  const crons = Array.isArray(def.cron) ? def.cron : [def.cron];
  crons.forEach((c, i) => {
    const fields = c.trim().split(/\s+/).length;
    if (fields !== 5) problems.push({ path: Array.isArray(def.cron) ? `cron[${i}]` : 'cron', message: `"${c}" has ${fields} fields: write 5 (minute hour day-of-month month day-of-week), e.g. "30 2 * * *"` });
    else
      try {
        CronExpressionParser.parse(c, { tz: 'UTC' });
      } catch (e) {
        problems.push({ path: Array.isArray(def.cron) ? `cron[${i}]` : 'cron', message: `"${c}" is not a valid cron expression: ${(e as Error).message}` });
      }
  });
  if (def.startAt && def.endAt && Date.parse(def.startAt) >= Date.parse(def.endAt)) problems.push({ path: 'endAt', message: 'endAt must be after startAt' });
  if (problems.length) throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
}

/** The next n fire times (ISO, UTC) in the schedule's time zone, as Temporal computes them. */
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
  ) {}

  temporalId(tenant: string, pipelineId: string, id: string) {
    return `schedule/${tenant}/${pipelineId}/${id}`;
  }

  private options(tenant: string, spec: PipelineSpec, version: number, id: string, def: ScheduleDef): ScheduleOptions {
    const { params, problems } = resolveParams(spec, Object.fromEntries(Object.entries(def.params ?? {}).map(([k, v]) => [k, String(v)])));
    if (problems.length) throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
    // The spec by reference: a schedule's action (and every run it starts) stays small at any pipeline size.
    const specRef = { tenant, pipelineId: spec.id, hash: contentHash(spec), version, tasks: spec.tasks.length };
    const input: PipelineRunInput = { specRef, tenant, trigger: 'schedule', params, pipelineVersion: version, specVersion: specHash(spec) };
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
        workflowType: 'pipelineRun',
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
      policies: { overlap: OVERLAP[def.overlap], catchupWindow: toMs(def.catchupWindow), pauseOnFailure: def.pauseOnFailure },
      state: { paused: def.paused, note: def.note },
    };
  }

  async create(tenant: string, spec: PipelineSpec, version: number, body: ScheduleBody) {
    const { id, ...def } = body;
    checkSchedule(def);
    const exists = await this.db.query('SELECT 1 FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [tenant, spec.id, id]);
    if (exists.rowCount) throw new RequestError(`schedule "${id}" already exists for pipeline ${spec.id}: PATCH it or pick another id`, 409);
    const opts = this.options(tenant, spec, version, id, def);
    await this.client.schedule.create(opts);
    try {
      await this.db.query('INSERT INTO schedules (tenant, pipeline_id, id, temporal_id, definition) VALUES ($1, $2, $3, $4, $5)', [tenant, spec.id, id, opts.scheduleId, JSON.stringify(def)]);
    } catch (e) {
      await this.client.schedule.getHandle(opts.scheduleId).delete().catch(() => {}); // nothing half-written
      throw e;
    }
    return this.get(tenant, spec.id, id);
  }

  async row(tenant: string, pipelineId: string, id: string) {
    const r = (await this.db.query<{ id: string; temporal_id: string; definition: ScheduleDef }>('SELECT id, temporal_id, definition FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [tenant, pipelineId, id])).rows[0];
    if (!r) throw new RequestError(`no schedule "${id}" on pipeline ${pipelineId}`, 404);
    return r;
  }

  async list(tenant: string, pipelineId: string) {
    const rows = (await this.db.query<{ id: string }>('SELECT id FROM schedules WHERE tenant = $1 AND pipeline_id = $2 ORDER BY id', [tenant, pipelineId])).rows;
    return Promise.all(rows.map((r) => this.get(tenant, pipelineId, r.id)));
  }

  async get(tenant: string, pipelineId: string, id: string, previewCount = 5) {
    const r = await this.row(tenant, pipelineId, id);
    let paused: boolean | undefined;
    let recent: { scheduledAt: string; workflowId: string }[] = [];
    try {
      const d = await this.client.schedule.getHandle(r.temporal_id).describe();
      paused = d.state.paused;
      recent = d.info.recentActions.map((a) => ({ scheduledAt: a.scheduledAt.toISOString(), workflowId: a.action.workflow.workflowId }));
    } catch (e) {
      if (!(e instanceof ScheduleNotFoundError)) throw e;
    }
    return { id, pipelineId, ...r.definition, paused: paused ?? r.definition.paused, nextFires: previewFires(r.definition, previewCount), recentRuns: recent };
  }

  async update(tenant: string, spec: PipelineSpec, version: number, id: string, patch: Partial<ScheduleDef>) {
    const r = await this.row(tenant, spec.id, id);
    const def = { ...r.definition, ...patch } as ScheduleDef;
    checkSchedule(def);
    const opts = this.options(tenant, spec, version, id, def);
    await this.client.schedule.getHandle(r.temporal_id).update((prev) => ({ ...prev, spec: opts.spec, action: opts.action, policies: opts.policies, state: { ...prev.state, paused: patch.paused ?? prev.state.paused } }));
    await this.db.query('UPDATE schedules SET definition = $4, updated_at = now() WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [tenant, spec.id, id, JSON.stringify(def)]);
    return this.get(tenant, spec.id, id);
  }

  /** A new pipeline version: every schedule of the pipeline runs it from now on. */
  async retarget(tenant: string, spec: PipelineSpec, version: number) {
    const rows = (await this.db.query<{ id: string }>('SELECT id FROM schedules WHERE tenant = $1 AND pipeline_id = $2', [tenant, spec.id])).rows;
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
    await this.db.query('DELETE FROM schedules WHERE tenant = $1 AND pipeline_id = $2 AND id = $3', [tenant, pipelineId, id]);
  }

  async setPaused(tenant: string, pipelineId: string, id: string, paused: boolean) {
    const r = await this.row(tenant, pipelineId, id);
    const h = this.client.schedule.getHandle(r.temporal_id);
    if (paused) await h.pause('paused through the Strata API');
    else await h.unpause('unpaused through the Strata API');
    await this.db.query(`UPDATE schedules SET definition = jsonb_set(definition, '{paused}', $4::jsonb), updated_at = now() WHERE tenant = $1 AND pipeline_id = $2 AND id = $3`, [tenant, pipelineId, id, JSON.stringify(paused)]);
  }

  async trigger(tenant: string, pipelineId: string, id: string) {
    const r = await this.row(tenant, pipelineId, id);
    await this.client.schedule.getHandle(r.temporal_id).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
  }

  /** One run per interval the cron would have fired in [from, to), each with its own logical date. */
  async backfill(tenant: string, pipelineId: string, id: string, from: string, to: string, overlap: ScheduleBody['overlap']) {
    const r = await this.row(tenant, pipelineId, id);
    if (Date.parse(from) >= Date.parse(to)) throw new RequestError('backfill: "to" must be after "from"', 400);
    const fires = previewFires({ ...r.definition, startAt: undefined, endAt: undefined }, 1000, new Date(Date.parse(from) - 1)).filter((t) => Date.parse(t) < Date.parse(to));
    if (fires.length >= 1000) throw new RequestError('backfill covers 1,000 runs or more: split it into smaller ranges', 400);
    await this.client.schedule.getHandle(r.temporal_id).backfill([{ start: new Date(from), end: new Date(to), overlap: OVERLAP[overlap] }]);
    return { runs: fires.length, logicalDates: fires };
  }
}
