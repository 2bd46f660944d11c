/** Request bodies of the HTTP API (validated here; also rendered into the OpenAPI docs). */
import { ScheduleNotifyRules } from './notify.js';
import { z } from 'zod';
import { Duration, toMs } from './duration.js';
import { parseReconcileInput, ReconcileOptions } from './reconcile.js';
import { SqlEngine } from './kinds.js';
import { ClusterRequest } from './cluster.js';
import { fmtBytes, fmtMs, LIMITS } from './limits.js';

const Scalar = z.union([z.string(), z.number(), z.boolean()]);

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
/** A real calendar date (no 2026-02-30, no year 0), as ISO 8601; undefined when it is one. */
export function isoDateProblem(s: string): string | undefined {
  const m = ISO_RE.exec(s);
  const bad = `write an ISO date or timestamp, e.g. 2026-11-01 or 2026-11-01T00:00:00Z ("${s.slice(0, 40)}" is not one)`;
  if (!m) return bad;
  const [y, mo, d, h = 0, mi = 0, se = 0] = m
    .slice(1, 7)
    .map((x) => (x === undefined ? undefined : Number(x))) as number[];
  const day = new Date(Date.UTC(y, mo - 1, d));
  day.setUTCFullYear(y); // Date.UTC maps years 0–99 to 1900–1999
  if (y < 1 || day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d)
    return `write an ISO date or timestamp, e.g. 2026-11-01 or 2026-11-01T00:00:00Z (there is no day ${s.slice(0, 10)})`;
  if (h > 23 || mi > 59 || se > 59 || Number.isNaN(Date.parse(s))) return bad;
  return undefined;
}
/** An ISO date or timestamp, normalised to UTC (`2026-11-01T00:00:00.000Z`). */
export const IsoDate = z
  .string()
  .superRefine((s, c) => {
    const p = isoDateProblem(s);
    if (p) c.addIssue({ code: 'custom', message: p });
  })
  .transform((s) => new Date(s).toISOString());

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');
/** Run parameters: names and values together at most LIMITS.paramsBytes. */
const Params = z.record(z.string(), Scalar).superRefine((p, c) => {
  const n = Object.entries(p).reduce((sum, [k, v]) => sum + utf8(k) + utf8(String(v)), 0);
  if (n > LIMITS.paramsBytes)
    c.addIssue({
      code: 'custom',
      message: `${n.toLocaleString('en')} bytes of names and values; at most ${fmtBytes(LIMITS.paramsBytes)}: pass large values by reference (a path or a table name)`,
    });
});

export const TriggerRunBody = z
  .object({
    params: Params.optional(),
    only: z.array(z.string()).max(LIMITS.tasksPerSpec).optional(),
    withUpstream: z.boolean().optional(),
    version: z
      .number()
      .int()
      .positive()
      .max(LIMITS.maxVersion, `a pipeline version is at most ${LIMITS.maxVersion}`)
      .optional(),
    logicalDate: IsoDate.optional(),
  })
  .strict();

export const OVERLAP_POLICIES = ['skip', 'buffer_one', 'buffer_all', 'cancel_other', 'allow_all'] as const;

const ScheduleFields = {
  cron: z.union([z.string(), z.array(z.string())], 'write a cron expression or a list of them').superRefine((v, c) => {
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0) c.addIssue({ code: 'custom', message: 'give at least one cron expression' });
    if (list.length > LIMITS.cronsPerSchedule)
      c.addIssue({
        code: 'custom',
        message: `a schedule has at most ${LIMITS.cronsPerSchedule} cron expressions (got ${list.length}): split it into several schedules`,
      });
    list.forEach((x, i) => {
      const path = Array.isArray(v) ? [i] : [];
      if (x.trim() === '') c.addIssue({ code: 'custom', path, message: 'a cron expression is empty' });
      if (x.length > LIMITS.cronChars)
        c.addIssue({
          code: 'custom',
          path,
          message: `a cron expression is at most ${LIMITS.cronChars} characters (got ${x.length})`,
        });
    });
  }),
  timezone: z.string().max(64),
  overlap: z.enum(OVERLAP_POLICIES),
  catchupWindow: Duration,
  jitter: Duration,
  startAt: IsoDate,
  endAt: IsoDate,
  params: Params,
  paused: z.boolean(),
  pauseOnFailure: z.boolean(),
  note: z.string().max(500),
  /** `schedule_missed` rules: who hears when a fire time is skipped or missed. */
  notify: ScheduleNotifyRules,
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
    notify: ScheduleFields.notify.optional(),
  })
  .strict();
export type ScheduleBody = z.infer<typeof ScheduleBody>;
/** A change to a schedule: only the fields given change (no defaults here). */
export const SchedulePatch = z.object(ScheduleFields).partial().strict();

export const BackfillBody = z
  .object({ from: IsoDate, to: IsoDate, overlap: z.enum(OVERLAP_POLICIES).default('allow_all') })
  .strict();

export const KeyBody = z
  .object({
    tenant: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,62}$/)
      .optional(),
    role: z.enum(['admin', 'operator', 'viewer']),
    name: z.string().max(100).optional(),
  })
  .strict();

export const TransformBody = z
  .object({
    sql: z.string().min(1),
    engine: SqlEngine.default('duckdb'),
    connection: z.string().optional(),
    output: z.string().optional(),
    params: Params.optional(),
  })
  .strict();

/** POST /api/v1/queries: one read-only statement (modelled on Databricks' statement execution API). */
export const QueryBody = z
  .object({
    sql: z
      .string()
      .min(1)
      .max(LIMITS.querySqlChars, `at most ${LIMITS.querySqlChars.toLocaleString('en')} characters`),
    engine: z.enum(['duckdb', 'postgres', 'mysql']).optional(),
    connection: z.string().min(1).max(128).optional(),
    /** Values for `{{ params.NAME | literal }}` / `{{ params.NAME | ident }}` in the SQL; typed by their JSON type. */
    params: Params.optional(),
    /** Seconds to wait for the answer (0 answers at once with a statement id). */
    wait: z
      .number()
      .int()
      .min(0)
      .max(
        LIMITS.queryWaitSeconds.max,
        `at most ${LIMITS.queryWaitSeconds.max} seconds: poll GET /api/v1/queries/{id} for longer`,
      )
      .optional(),
    /** Seconds the statement may run. */
    timeout: z
      .number()
      .int()
      .min(1)
      .max(LIMITS.queryTimeoutSeconds.max, `at most ${LIMITS.queryTimeoutSeconds.max} seconds`)
      .optional(),
    /** Answer at most this many rows, marking the result truncated (without it, more than the limit is an error). */
    rowLimit: z
      .number()
      .int()
      .min(1)
      .max(LIMITS.queryRows, `at most ${LIMITS.queryRows.toLocaleString('en')} rows`)
      .optional(),
    /** Namespace of the datasets the SQL names (default "default"). */
    namespace: z
      .string()
      .regex(/^[a-z][a-z0-9_]{0,62}$/, 'a namespace is lower-case letters, digits and "_"')
      .optional(),
    /** A client request id: sending the same one again returns the same statement (also the Idempotency-Key header). */
    requestId: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional(),
  })
  .strict();
export type QueryBody = z.infer<typeof QueryBody>;

// A path or URI, a dataset name, {uri}, {dataset}, {connection, table|query}; checked again
// with messages that name the form meant (parseReconcileInput).
const DatasetInput = z
  .unknown()
  .superRefine((v, ctx) => {
    const r = parseReconcileInput(v);
    if (!r.success) for (const i of r.error.issues) ctx.addIssue({ ...i, path: i.path });
  })
  .meta({
    description:
      'a lake path or s3:// / file:// URI, a dataset ("silver.orders@3"), or {uri, format?, csv?}, {dataset, namespace?}, {connection, table | query}',
  });
export const ReconciliationBody = z
  .object({
    left: DatasetInput,
    right: DatasetInput,
    options: ReconcileOptions.partial()
      .strict()
      .extend({
        memoryLimitBytes: z
          .number()
          .int()
          .positive()
          .max(
            LIMITS.reconcileMemoryBytes,
            `at most ${fmtBytes(LIMITS.reconcileMemoryBytes)}: larger inputs take the partitioned path, which needs no more memory`,
          )
          .optional(),
      })
      .optional(),
  })
  .strict();

export const RunsQuery = z
  .object({
    pipeline: z.string().optional(),
    status: z.enum(['queued', 'running', 'success', 'failed', 'cancelled', 'failed_to_start']).optional(),
    since: IsoDate.optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(2000).optional(),
  })
  .strict();

/** What a runs-list cursor decodes to (the API makes it; anything else is a 400). */
export const RunsCursor = z.object({ startedAt: IsoDate, runId: z.string().min(1).max(1000) }).strict();

/** GET /api/v1/pipelines/{id}?version=N */
export const PipelineQuery = z
  .object({
    version: z
      .string()
      .regex(/^[1-9]\d*$/, 'version must be a positive whole number')
      .refine((v) => Number(v) <= LIMITS.maxVersion, `a pipeline version is at most ${LIMITS.maxVersion}`)
      .transform(Number)
      .optional(),
  })
  .strict();

/** A duration within [min, max] (limits in ms), for the cluster bounds below. */
const bounded = (name: string, b: { min: number; max: number }) => (d: unknown, c: z.RefinementCtx) => {
  if (d === undefined) return;
  const ms = toMs(d as Duration);
  if (ms < b.min || ms > b.max)
    c.addIssue({
      code: 'custom',
      path: [name],
      message: `${name} must be from ${fmtMs(b.min)} to ${fmtMs(b.max)} (got ${fmtMs(ms)})`,
    });
};

/** POST /api/v1/clusters: a cluster request; the tenant comes from the API key. Durations within the API's bounds. */
export const ClusterBody = ClusterRequest.partial({ tenant: true }).superRefine((b, c) => {
  bounded('idleTimeout', LIMITS.clusterIdleMs)(b.idleTimeout, c);
  bounded('maxLifetime', LIMITS.clusterLifetimeMs)(b.maxLifetime, c);
  bounded('pollInterval', LIMITS.clusterPollMs)(b.pollInterval, c);
});
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
export const ReconciliationsQuery = z
  .object({
    mapping: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,100}$/, 'mapping is a mapping name: letters, digits, _ and -')
      .optional(),
    pipeline: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,100}$/, 'pipeline is a pipeline id: letters, digits, _ and -')
      .optional(),
    limit: z.coerce.number().int().min(1, 'limit is 1 to 200').max(200, 'limit is 1 to 200').default(50),
  })
  .strict();

export const LogsQuery = z
  .object({
    follow: z
      .enum(['true', 'false'], { message: 'write follow=true or follow=false' })
      .transform((v) => v === 'true')
      .optional(),
    tail: z.coerce.number().int().min(1, 'tail is a number of lines, at least 1').max(100_000).optional(),
  })
  .strict();
