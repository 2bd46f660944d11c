/**
 * Notifications: the `notify:` rules a pipeline spec (or a schedule) declares, the events
 * they fire on, and which rules a finished run triggers. Specs name channels only; what a
 * channel is (URL, HMAC key, SMTP credentials) is the platform's configuration per tenant
 * (activities/notify/channels.ts). Pure: the workflow, the API and the worker share it.
 */
import { z } from 'zod';
import type { RunContext } from './run.js';

export const NOTIFY_EVENTS = [
  'failure',
  'success',
  'retry_exhausted',
  'quality_warning',
  'sla_missed',
  'cancelled',
  'schedule_missed',
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** The events a pipeline rule may name (a schedule's rules name `schedule_missed`). */
export const RUN_EVENTS: NotifyEvent[] = NOTIFY_EVENTS.filter((e) => e !== 'schedule_missed');

/**
 * The events a reconciliation mapping's own rules may name, about its comparison in a run:
 * `success` (it ran and found no differences), `quality_warning` (it found differences and
 * its policy let the task succeed: `record` or `warn`), `failure` (its task failed: differences
 * under `fail`, or inputs that could not be read).
 */
export const MAPPING_EVENTS: NotifyEvent[] = ['failure', 'success', 'quality_warning'];

/** `rules` per spec, schedule or mapping; `mappingRules` over all mappings of a spec; `listed` facts per list. */
export const NOTIFY_LIMITS = { rules: 20, listed: 20, mappingRules: 100 } as const;

const RULE_ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const CHANNEL = /^[a-z][a-z0-9_]{0,63}$/;

export const NotifyRule = z
  .object({
    /** Names the rule in deliveries (dedup key with run and event); default `{channel}`. */
    id: z
      .string()
      .regex(RULE_ID, 'a rule id starts with a letter and holds letters, digits, "_" and "-" (at most 64)')
      .optional(),
    on: z
      .array(z.enum(NOTIFY_EVENTS, { message: `an event is one of ${NOTIFY_EVENTS.join(', ')}` }))
      .min(1, `name at least one event (${NOTIFY_EVENTS.join(', ')})`),
    channel: z
      .string()
      .regex(CHANNEL, 'a channel name is lower-case letters, digits and "_" (the platform configures it)'),
  })
  .strict();
export type NotifyRuleSpec = z.infer<typeof NotifyRule>;

/** A rule as runs carry it: its id resolved. */
export interface NotifyRuleRef {
  id: string;
  on: NotifyEvent[];
  channel: string;
  /** A reconciliation mapping's own rule: its events are about that mapping's task in the run. */
  mapping?: { name: string; task: string };
}

function rules(allowed: readonly NotifyEvent[], elsewhere: string) {
  return z
    .array(NotifyRule)
    .max(NOTIFY_LIMITS.rules, `declare at most ${NOTIFY_LIMITS.rules} notify rules`)
    .superRefine((rules, ctx) => {
      rules.forEach((r, i) =>
        r.on.forEach((e, j) => {
          if (!allowed.includes(e))
            ctx.addIssue({
              code: 'custom',
              path: [i, 'on', j],
              message: `"${e}" is not an event here: use ${allowed.join(', ')} (${elsewhere})`,
            });
        }),
      );
      uniqueIds(rules, ctx);
    });
}

/** A pipeline's rules: events of its runs. */
export const NotifyRules = rules(RUN_EVENTS, 'schedule_missed belongs on a schedule: its "notify"');
/** A schedule's rules: a fire time it missed (its runs notify through the pipeline's rules). */
export const ScheduleNotifyRules = rules(['schedule_missed'], 'a schedule’s runs notify through the pipeline’s rules');
/** A reconciliation mapping's rules: what its comparison found in a run. */
export const MappingNotifyRules = rules(
  MAPPING_EVENTS,
  'a mapping’s own events; the run’s other events belong on the pipeline’s "notify"',
);

function uniqueIds(rules: NotifyRuleSpec[], ctx: z.RefinementCtx) {
  {
    const seen = new Map<string, number>();
    rules.forEach((r, i) => {
      const id = r.id ?? r.channel;
      if (seen.has(id))
        ctx.addIssue({
          code: 'custom',
          path: [i, r.id ? 'id' : 'channel'],
          message: `two rules are called "${id}" (also notify[${seen.get(id)}]): give each rule its own "id"`,
        });
      else seen.set(id, i);
    });
  }
}

export function ruleRefs(rules: NotifyRuleSpec[] | undefined): NotifyRuleRef[] {
  return (rules ?? []).map((r) => ({ id: r.id ?? r.channel, on: [...r.on], channel: r.channel }));
}

/**
 * A mapping's rules as runs carry them: ids `{mapping}:{rule}` (a pipeline rule's id holds no
 * ":", so a mapping's rule never shares a delivery row with one of the pipeline's).
 */
export function mappingRuleRefs(mapping: string, task: string, rules: NotifyRuleSpec[] | undefined): NotifyRuleRef[] {
  return ruleRefs(rules).map((r) => ({ ...r, id: `${mapping}:${r.id}`, mapping: { name: mapping, task } }));
}

/** Counts of a comparison, as notifications carry them. */
export interface ReconcileCounts {
  matched: number;
  changed: number;
  onlyLeft: number;
  onlyRight: number;
}

/** A reconcile task of the run as the notifier looks it up (store: reconciliations and run_tasks). */
export interface ReconcileOutcome {
  task: string;
  mapping?: string;
  policy: 'record' | 'warn' | 'fail';
  /** The task's status in the run (`success`, `failed`, `skipped`, …). */
  status: string;
  /** Present when the comparison ran in this run (a repair's reused task has none). */
  differences?: number;
  counts?: ReconcileCounts;
  differencesDataset?: { dataset: string; version: number; rows: number };
  error?: string;
}

/** One quality warning: a dataset's failing `warn` checks, or a `warn` comparison that found differences. */
export interface QualityWarning {
  task: string;
  checks: string[];
  mapping?: string;
  differences?: number;
  counts?: ReconcileCounts;
}

/** What a finished run looked like, as far as rules care (bounded lists, from the workflow). */
export const RUN_END_STATUSES = ['success', 'failed', 'cancelled'] as const;
export const isRunEndStatus = (s: string): s is RunOutcome['status'] => RUN_END_STATUSES.some((e) => e === s);

export interface RunOutcome {
  status: (typeof RUN_END_STATUSES)[number];
  /** Tasks that failed after their last attempt (not cut short by a non-retryable error). */
  exhausted: { task: string; attempts: number }[];
  /** Tasks whose output passed with `severity: warn` checks failing (and, once looked up, `warn` comparisons that differ). */
  warned: QualityWarning[];
  /** The run's reconcile tasks the rules care about (looked up by the notifier). */
  reconciliations?: ReconcileOutcome[];
}

const countsText = (c: ReconcileCounts | undefined, differences?: number) =>
  c ? `${c.changed} changed, ${c.onlyLeft} only left, ${c.onlyRight} only right` : `${differences ?? 0} differences`;

/** One line about a comparison's differences, for notification bodies. */
export function reconcileSummary(r: Pick<ReconcileOutcome, 'counts' | 'differences'>): string {
  return countsText(r.counts, r.differences);
}

/**
 * The outcome with the run's reconcile tasks in: a `warn` comparison that succeeded with
 * differences is one of the run's quality warnings (so the pipeline's `quality_warning`
 * rules fire), naming its mapping and counts.
 */
export function withReconciliations<T extends RunOutcome>(o: T, found: ReconcileOutcome[]): T {
  const warned = [...o.warned];
  for (const r of found)
    if (
      r.policy === 'warn' &&
      r.status === 'success' &&
      (r.differences ?? 0) > 0 &&
      warned.length < NOTIFY_LIMITS.listed &&
      !warned.some((w) => w.task === r.task)
    )
      warned.push({
        task: r.task,
        checks: [`${r.mapping ? `mapping ${r.mapping}` : 'reconciliation'} differs: ${reconcileSummary(r)}`],
        ...(r.mapping ? { mapping: r.mapping } : {}),
        differences: r.differences,
        ...(r.counts ? { counts: r.counts } : {}),
      });
  return { ...o, warned, reconciliations: found };
}

/** What a mapping's comparison in this run amounts to, for its own rules (undefined: it did not run). */
export function mappingEvent(r: ReconcileOutcome | undefined): NotifyEvent | undefined {
  if (!r) return undefined;
  if (r.status === 'failed') return 'failure';
  if (r.status !== 'success' || r.differences === undefined) return undefined;
  return r.differences > 0 ? 'quality_warning' : 'success';
}

/** The (rule, event) pairs a finished run fires, in rule order; a mapping's rules carry its comparison. */
export function endEvents(
  rules: NotifyRuleRef[],
  o: RunOutcome,
): { rule: NotifyRuleRef; event: NotifyEvent; reconciliation?: ReconcileOutcome }[] {
  const happened = new Set<NotifyEvent>();
  if (o.status === 'failed') happened.add('failure');
  if (o.status === 'success') happened.add('success');
  if (o.status === 'cancelled') happened.add('cancelled');
  if (o.exhausted.length) happened.add('retry_exhausted');
  if (o.warned.length) happened.add('quality_warning');
  const out: { rule: NotifyRuleRef; event: NotifyEvent; reconciliation?: ReconcileOutcome }[] = [];
  for (const rule of rules) {
    if (rule.mapping) {
      const r = o.reconciliations?.find((x) => x.task === rule.mapping!.task);
      const e = mappingEvent(r);
      if (e && rule.on.includes(e)) out.push({ rule, event: e, reconciliation: r });
      continue;
    }
    for (const e of rule.on) if (happened.has(e)) out.push({ rule, event: e });
  }
  return out;
}

/**
 * Whether a cancelled run starts its end notifier: a rule names `cancelled`, or an event a
 * cancelled run can still have had (`retry_exhausted`, `quality_warning`), or is a mapping's.
 */
export function cancelNotifies(rules: NotifyRuleRef[]): boolean {
  return rules.some(
    (r) => r.mapping || r.on.some((e) => e === 'cancelled' || e === 'retry_exhausted' || e === 'quality_warning'),
  );
}

/** The reconcile tasks a notifier looks up: those with rules of their own, and (for `quality_warning`) any that warned. */
export function reconcileLookup(rules: NotifyRuleRef[]): { tasks: string[]; warned: boolean } | undefined {
  const tasks = [...new Set(rules.flatMap((r) => (r.mapping ? [r.mapping.task] : [])))];
  const warned = rules.some((r) => !r.mapping && r.on.includes('quality_warning'));
  return tasks.length || warned ? { tasks, warned } : undefined;
}

/** What the notifier workflow is handed: identities and bounded facts, never a secret. */
export interface NotifyInput {
  run: RunContext;
  rules: NotifyRuleRef[];
  /** `end`: the run finished (outcome set); `sla`: wait `slaMs` from `startedAt`, then check the run. */
  phase: 'end' | 'sla';
  startedAt?: string;
  slaMs?: number;
  outcome?: RunOutcome & { error?: string; failures?: { id: string; error: string }[] };
  /** Delivery retries (tests pass milliseconds). */
  retry?: { initialMs: number; maxAttempts: number };
}

/** One delivery as the deliver activity takes it. */
export interface DeliveryInput {
  run: NotifyInput['run'];
  rule: string;
  channel: string;
  event: NotifyEvent;
  facts: {
    status: string;
    error?: string;
    failedTasks: { id: string; error: string }[];
    exhausted?: RunOutcome['exhausted'];
    warned?: RunOutcome['warned'];
    /** A mapping rule's delivery: what its comparison found. */
    reconciliation?: ReconcileOutcome;
    slaMs?: number;
    startedAt?: string;
    schedule?: { id: string; missed: number; skipped: number; detail: string };
  };
}

/** The API's answer for one delivery. */
export interface DeliveryRecord {
  runId: string;
  rule: string;
  event: NotifyEvent;
  channel: string;
  channelType: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  lastError?: string;
  responseStatus?: number;
  createdAt: string;
  deliveredAt?: string;
}

/** What a schedule's watcher is started with (workflows/schedule-watch.ts). */
export interface ScheduleWatchInput {
  tenant: string;
  pipelineId: string;
  /** The schedule's id in the API (`nightly`) and in Temporal (`schedule/{tenant}/{pipeline}/{id}`). */
  schedule: string;
  scheduleId: string;
  rules: NotifyRuleRef[];
  everyMs: number;
  seen?: { missed: number; skipped: number };
  retry?: { initialMs: number; maxAttempts: number };
}
