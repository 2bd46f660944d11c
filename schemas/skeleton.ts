/**
 * A pipeline's skeleton: what the run's workflow needs to plan and dispatch tasks (ids,
 * needs, trigger rules, how each task runs, its timeout and retry policy), without the
 * tasks' bodies (SQL, paths, checks). A large spec reaches the workflow as skeleton pages
 * of bounded size; the task bodies are loaded and rendered by the activity that runs them.
 * Pure: the workflow, the activities and the tests share it.
 */
import { toMs } from './duration.js';
import { TASK_KINDS, sqlDialectAt, type KindRunner } from './kinds.js';
import { paramDecls } from './params.js';
import { ruleRefs, type NotifyRuleRef } from './notify.js';
import { effectiveTask, TRIGGER_RULES, type PipelineSpec, type TaskSpec, type TriggerRule } from './pipeline.js';
import type { RunContext } from './run.js';
import { renderTask, runVariables } from './template.js';

/** How a group of tasks runs: shared by every task with the same kind, runner, timeout and retry. */
export interface TaskProfile {
  /** `sql on duckdb`: for activity summaries. */
  label: string;
  runner: KindRunner;
  timeoutMs: number;
  retry: { attempts: number; initialIntervalMs: number; backoff: number; maxIntervalMs: number };
}

/** One task: id, needs, trigger rule (index in TRIGGER_RULES), profile (index in the page's profiles). */
export type SkeletonNode = [id: string, needs: string[], trigger: number, profile: number];

export interface SkeletonPage {
  pipelineId: string;
  maxParallel: number;
  taskCount: number;
  profiles: TaskProfile[];
  nodes: SkeletonNode[];
  /** Where the next page starts (a task index); absent on the last page. */
  next?: number;
  /** On the first page of a spec with `notify` rules: the rules (channel names only) and the SLA. */
  notify?: { rules: NotifyRuleRef[]; slaMs?: number };
}

/** Bytes of skeleton per page: far under Temporal's 2 MB payload limit and its 512 KB warning. */
export const SKELETON_PAGE_BYTES = 256 * 1024;

export function taskProfile(spec: PipelineSpec, task: TaskSpec): TaskProfile {
  const kind = TASK_KINDS[task.kind];
  const eff = effectiveTask(spec, task);
  const runner = kind.route?.(task) ?? kind.run;
  return {
    label: `${task.kind}${typeof task.engine === 'string' ? ` on ${task.engine}` : ''}`,
    runner,
    timeoutMs: toMs(eff.timeout),
    retry: {
      attempts: eff.retry.attempts,
      initialIntervalMs: toMs(eff.retry.initialInterval),
      backoff: eff.retry.backoff,
      maxIntervalMs: toMs(eff.retry.maxInterval),
    },
  };
}

/** The skeleton of tasks[from…] up to about `budget` bytes (at least one task). */
export function skeletonPage(spec: PipelineSpec, from = 0, budget = SKELETON_PAGE_BYTES): SkeletonPage {
  const profiles: TaskProfile[] = [];
  const profileIndex = new Map<string, number>();
  const nodes: SkeletonNode[] = [];
  let bytes = 0;
  let i = from;
  for (; i < spec.tasks.length; i++) {
    const t = spec.tasks[i];
    const p = taskProfile(spec, t);
    const key = JSON.stringify(p);
    let pi = profileIndex.get(key);
    if (pi === undefined) {
      pi = profiles.length;
      profiles.push(p);
      profileIndex.set(key, pi);
      bytes += key.length;
    }
    const trigger = TRIGGER_RULES.indexOf(effectiveTask(spec, t).trigger);
    const size = t.id.length + t.needs.reduce((s, n) => s + n.length + 3, 0) + 16;
    if (nodes.length > 0 && bytes + size > budget) break;
    bytes += size;
    nodes.push([t.id, t.needs, trigger, pi]);
  }
  return {
    pipelineId: spec.id,
    maxParallel: spec.maxParallel,
    taskCount: spec.tasks.length,
    profiles,
    nodes,
    ...(i < spec.tasks.length ? { next: i } : {}),
    ...(from === 0 && spec.notify?.length
      ? { notify: { rules: ruleRefs(spec.notify), ...(spec.sla !== undefined ? { slaMs: toMs(spec.sla) } : {}) } }
      : {}),
  };
}

export const triggerAt = (i: number): TriggerRule => TRIGGER_RULES[i];

/**
 * A task's fields with its run's values in place: params through their declared types
 * and SQL filters, built-ins from the run. Throws (a message naming the task) when a
 * value does not fit: the task fails without retrying.
 */
export function renderSpecTask(
  spec: PipelineSpec,
  task: TaskSpec,
  run: RunContext,
  params: Record<string, string>,
): Record<string, unknown> & { id: string; kind: string } {
  const vars = runVariables({
    logicalDate: run.logicalDate,
    runId: run.runId,
    pipelineId: spec.id,
    tenant: run.tenant,
    trigger: String(run.trigger),
    params,
  });
  const fields = { ...task, needs: undefined, retry: undefined };
  const rendered = renderTask(fields, { ...vars, task_id: task.id }, paramDecls(spec.params ?? {}), (path) =>
    sqlDialectAt(task, path),
  );
  // Ids and kinds are names, never templates: the task keeps its own.
  return { ...rendered, id: task.id, kind: task.kind };
}
