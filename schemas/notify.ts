/**
 * Notifications: the `notify:` rules a pipeline spec (or a schedule) declares, the events
 * they fire on, and which rules a finished run triggers. Specs name channels only; what a
 * channel is (URL, HMAC key, SMTP credentials) is the platform's configuration per tenant
 * (activities/notify/channels.ts). Pure: the workflow, the API and the worker share it.
 */
import { z } from 'zod';

export const NOTIFY_EVENTS = [
  'failure',
  'success',
  'retry_exhausted',
  'quality_warning',
  'sla_missed',
  'schedule_missed',
] as const;
export type NotifyEvent = (typeof NOTIFY_EVENTS)[number];

/** The events a pipeline rule may name (a schedule's rules name `schedule_missed`). */
export const RUN_EVENTS: NotifyEvent[] = ['failure', 'success', 'retry_exhausted', 'quality_warning', 'sla_missed'];

export const NOTIFY_LIMITS = { rules: 20, listed: 20 } as const;

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

/** What a finished run looked like, as far as rules care (bounded lists, from the workflow). */
export interface RunOutcome {
  status: 'success' | 'failed' | 'cancelled';
  /** Tasks that failed after their last attempt (not cut short by a non-retryable error). */
  exhausted: { task: string; attempts: number }[];
  /** Tasks whose output passed with `severity: warn` checks failing. */
  warned: { task: string; checks: string[] }[];
}

/** The (rule, event) pairs a finished run fires, in rule order. */
export function endEvents(rules: NotifyRuleRef[], o: RunOutcome): { rule: NotifyRuleRef; event: NotifyEvent }[] {
  const happened = new Set<NotifyEvent>();
  if (o.status === 'failed') happened.add('failure');
  if (o.status === 'success') happened.add('success');
  if (o.exhausted.length) happened.add('retry_exhausted');
  if (o.warned.length) happened.add('quality_warning');
  const out: { rule: NotifyRuleRef; event: NotifyEvent }[] = [];
  for (const rule of rules) for (const e of rule.on) if (happened.has(e)) out.push({ rule, event: e });
  return out;
}

/** What the notifier workflow is handed: identities and bounded facts, never a secret. */
export interface NotifyInput {
  run: {
    runId: string;
    workflowId: string;
    pipelineId: string;
    tenant: string;
    trigger: string;
    logicalDate: string;
  };
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
