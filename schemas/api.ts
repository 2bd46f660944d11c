/** Request bodies of the HTTP API (validated here; also rendered into the OpenAPI docs). */
import { z } from 'zod';
import { Duration } from './duration.js';
import { CsvOptions, ReconcileOptions } from './reconcile.js';
import { SqlEngine } from './kinds.js';
import { ClusterRequest } from './cluster.js';

const Scalar = z.union([z.string(), z.number(), z.boolean()]);
const IsoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'write an ISO date or timestamp, e.g. 2026-11-01T00:00:00Z');

export const TriggerRunBody = z
  .object({
    params: z.record(z.string(), Scalar).optional(),
    only: z.array(z.string()).optional(),
    withUpstream: z.boolean().optional(),
    version: z.number().int().positive().optional(),
    logicalDate: IsoDate.optional(),
  })
  .strict();

export const OVERLAP_POLICIES = ['skip', 'buffer_one', 'buffer_all', 'cancel_other', 'allow_all'] as const;

const ScheduleFields = {
  cron: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  timezone: z.string(),
  overlap: z.enum(OVERLAP_POLICIES),
  catchupWindow: Duration,
  jitter: Duration,
  startAt: IsoDate,
  endAt: IsoDate,
  params: z.record(z.string(), Scalar),
  paused: z.boolean(),
  pauseOnFailure: z.boolean(),
  note: z.string().max(500),
};

export const ScheduleBody = z
  .object({
    ...ScheduleFields,
    id: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "_" and "-"'),
    timezone: ScheduleFields.timezone.default('UTC'),
    overlap: ScheduleFields.overlap.default('skip'),
    catchupWindow: ScheduleFields.catchupWindow.default('1d'),
    jitter: ScheduleFields.jitter.optional(),
    startAt: ScheduleFields.startAt.optional(),
    endAt: ScheduleFields.endAt.optional(),
    params: ScheduleFields.params.optional(),
    paused: ScheduleFields.paused.default(false),
    pauseOnFailure: ScheduleFields.pauseOnFailure.default(false),
    note: ScheduleFields.note.optional(),
  })
  .strict();
export type ScheduleBody = z.infer<typeof ScheduleBody>;
/** A change to a schedule: only the fields given change (no defaults here). */
export const SchedulePatch = z.object(ScheduleFields).partial().strict();

export const BackfillBody = z.object({ from: IsoDate, to: IsoDate, overlap: z.enum(OVERLAP_POLICIES).default('allow_all') }).strict();

export const KeyBody = z.object({ tenant: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).optional(), role: z.enum(['admin', 'operator', 'viewer']), name: z.string().max(100).optional() }).strict();

export const TransformBody = z
  .object({
    sql: z.string().min(1),
    engine: SqlEngine.default('duckdb'),
    connection: z.string().optional(),
    output: z.string().optional(),
    params: z.record(z.string(), Scalar).optional(),
  })
  .strict();

const DatasetInput = z.union([z.string().min(1), z.object({ uri: z.string().min(1), format: z.enum(['csv', 'parquet']).optional(), csv: CsvOptions.partial().optional() }).strict()]);
export const ReconciliationBody = z.object({ left: DatasetInput, right: DatasetInput, options: ReconcileOptions.partial().strict().optional() }).strict();

export const RunsQuery = z
  .object({
    pipeline: z.string().optional(),
    status: z.enum(['queued', 'running', 'success', 'failed', 'cancelled']).optional(),
    since: IsoDate.optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().optional(),
  })
  .strict();

/** POST /api/v1/clusters: a cluster request; the tenant comes from the API key. */
export const ClusterBody = ClusterRequest.partial({ tenant: true });
/** POST /api/v1/clusters/{name}/resize: the new size (fields left out keep their value). */
export const ClusterResizeBody = z
  .object({
    instances: z.number().int().min(1, 'a cluster needs at least 1 instance').optional(),
    cores: z.number().int().min(1).optional(),
    memoryGi: z.number().int().min(1).optional(),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'give at least one of instances, cores, memoryGi');

/** GET /api/v1/runs/{run}/tasks/{task}/logs query. */
export const LogsQuery = z
  .object({
    follow: z.enum(['true', 'false'], { message: 'write follow=true or follow=false' }).transform((v) => v === 'true').optional(),
    tail: z.coerce.number().int().min(1, 'tail is a number of lines, at least 1').max(100_000).optional(),
  })
  .strict();
