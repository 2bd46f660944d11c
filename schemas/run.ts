import type { PipelineSpec } from './pipeline.js';

export const FINAL_TASK_STATUSES = ['success', 'failed', 'skipped', 'upstream_failed', 'cancelled', 'excluded'] as const;
export type FinalTaskStatus = (typeof FINAL_TASK_STATUSES)[number];
export type TaskStatus = 'pending' | 'running' | FinalTaskStatus;

/** Small facts a task hands back; data itself stays in the lake or the database. */
export interface TaskOutput {
  rowCount?: number;
  /** Where the task's data landed (a lake path or URI). */
  location?: string;
  [k: string]: unknown;
}

export interface TaskState {
  status: TaskStatus;
  attempts: number;
  startedAt?: string;
  endedAt?: string;
  error?: string;
  errorType?: string;
  output?: TaskOutput;
  /** Taken over from an earlier run by repair, not run again. */
  reusedFrom?: string;
}

/** `queued`: accepted by the API's trigger outbox, not started in Temporal yet (milliseconds, normally). */
export type RunStatus = 'queued' | 'running' | 'success' | 'failed' | 'cancelled';
export type Trigger = 'manual' | 'api' | 'schedule' | 'repair' | 'backfill';

export interface RunContext {
  runId: string;
  workflowId: string;
  pipelineId: string;
  tenant: string;
  trigger: Trigger | string;
  logicalDate: string;
}

export interface RunState extends RunContext {
  status: RunStatus;
  startedAt: string;
  endedAt?: string;
  tasks: Record<string, TaskState>;
  /** How many times this run continued as new to keep its history small. */
  continuations: number;
}

export interface PipelineRunOptions {
  /** Heartbeat timeout for long activities (ms); how fast a dead worker is noticed. */
  heartbeatTimeoutMs?: number;
  /** Continue as new once history reaches this many events (default 8,000). */
  continueAsNewAfterEvents?: number;
}

export interface PipelineRunInput {
  spec: PipelineSpec;
  tenant: string;
  trigger: Trigger | string;
  /** ISO timestamp; defaults to the workflow start time. */
  logicalDate?: string;
  params?: Record<string, string>;
  /** Run only these tasks (others end `excluded` and count as satisfied). */
  only?: string[];
  withUpstream?: boolean;
  /** Repair: final states of an earlier run; successful ones are reused, not re-run. */
  prior?: { runId: string; tasks: Record<string, TaskState> };
  options?: PipelineRunOptions;
  /** Registered version (metastore) and content hash of the spec, for the runs index. */
  pipelineVersion?: number;
  specVersion?: string;
  /** Carried across continue-as-new, in the compact form of workflows/carry.ts. */
  carried?: CarriedState | RunState;
}

/** What one task activity receives. */
export interface TaskActivityInput {
  task: Record<string, unknown> & { id: string; kind: string };
  run: RunContext;
}

export type TaskActivity = (input: TaskActivityInput) => Promise<TaskOutput>;

/** One task's state as a tuple: id, status index, attempts, start and end (epoch ms, 0 = none), extras. */
export type CarriedTask = [id: string, status: number, attempts: number, startedAt: number, endedAt: number, rest?: Partial<Pick<TaskState, 'output' | 'error' | 'errorType' | 'reusedFrom'>>];

/** The run state as carried across continue-as-new (see workflows/carry.ts). */
export interface CarriedState {
  header: Omit<RunState, 'tasks'>;
  tasks: CarriedTask[];
}
