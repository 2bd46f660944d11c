/** The queries a pipelineRun answers (both its current and its pre-scale-v1 code). */
import { defineQuery } from '@temporalio/workflow';
import type { RunState, TaskState } from '../schemas/run.js';

/** The run: header, counts, and its tasks up to RUN_ANSWER_LIMITS (`tasksPartial` says when some are left out). */
export const stateQuery = defineQuery<RunState>('state');

/** Tasks page by page, in spec order: `after` a task id, at most `limit` (≤ RUN_ANSWER_LIMITS.page). */
export const tasksQuery = defineQuery<
  { tasks: [string, TaskState][]; next?: string },
  [{ after?: string; limit?: number }]
>('tasks');

/** What the metastore does not have yet: tasks changed since the last delta was recorded (bounded). */
export const liveQuery = defineQuery<{
  status: RunState['status'];
  counts: RunState['counts'];
  tasks: Record<string, TaskState>;
}>('live');
