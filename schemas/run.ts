import type { PipelineSpec } from './pipeline.js';
import type { JobFinished } from './external.js';

export const FINAL_TASK_STATUSES = [
  'success',
  'failed',
  'skipped',
  'upstream_failed',
  'cancelled',
  'excluded',
] as const;
export type FinalTaskStatus = (typeof FINAL_TASK_STATUSES)[number];
/**
 * Every task status, in the order whose indexes carried run state encodes (one code per task
 * across continue-as-new): never reorder, only append.
 */
export const TASK_STATUSES = ['pending', 'running', ...FINAL_TASK_STATUSES] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Small facts a task hands back; data itself stays in the lake or the database. */
export interface TaskOutput {
  rowCount?: number;
  /** Where the task's data landed (a lake path or URI). */
  location?: string;
  [k: string]: unknown;
}

/** An object whose `rowCount` and `location`, where present, have their types. */
export function isTaskOutput(v: unknown): v is TaskOutput {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const { rowCount, location }: { rowCount?: unknown; location?: unknown } = v;
  return (
    (rowCount === undefined || typeof rowCount === 'number') && (location === undefined || typeof location === 'string')
  );
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

/**
 * `queued`: accepted by the API's trigger outbox, not started in Temporal yet (milliseconds, normally).
 * `failed_to_start`: the outbox gave up starting it (a permanent refusal, after bounded retries).
 */
export type RunStatus = 'queued' | 'running' | 'success' | 'failed' | 'cancelled' | 'failed_to_start';
export type Trigger = 'manual' | 'api' | 'schedule' | 'repair' | 'backfill';

export interface RunContext {
  runId: string;
  workflowId: string;
  pipelineId: string;
  tenant: string;
  /** A Trigger, or a schedule's own label. */
  trigger: string;
  logicalDate: string;
}

export interface RunState extends RunContext {
  status: RunStatus;
  startedAt: string;
  endedAt?: string;
  tasks: Record<string, TaskState>;
  /** How many times this run continued as new to keep its history small. */
  continuations: number;
  /** Tasks per status (every task, also those left out of `tasks`). */
  counts?: Partial<Record<TaskStatus, number>>;
  /** How many tasks the pipeline has. */
  taskCount?: number;
  /**
   * True when `tasks` is not every task with its full state: a workflow's answers are bounded
   * (RUN_ANSWER_LIMITS), so a large run's per-task state is read from the metastore or page by page.
   */
  tasksPartial?: boolean;
  /** The first failures, for messages (bounded). */
  failures?: { id: string; error: string; type?: string }[];
  /** Why a run that never started (`failed_to_start`) or is still `queued` could not start. */
  error?: string;
}

/** Bounds on what a run's workflow answers (query, result, failure details): they never grow with the pipeline. */
export const RUN_ANSWER_LIMITS = {
  /** Tasks listed in a `state` answer or a result. */
  tasks: 1000,
  /** Serialized bytes of those tasks. */
  bytes: 512 * 1024,
  /** Tasks in one page of the `tasks` query. */
  page: 1000,
  /** Failures named in a result or a failure's details. */
  failures: 20,
  /** A task's error message as kept in the workflow (the engine's full text goes to the task log). */
  errorChars: 4000,
} as const;

export interface PipelineRunOptions {
  /** Heartbeat timeout for long activities (ms); how fast a dead worker is noticed. */
  heartbeatTimeoutMs?: number;
  /** Continue as new once history reaches this many events (default 8,000). */
  continueAsNewAfterEvents?: number;
  /** The same for each external job's own workflow (default 8,000). */
  jobContinueAsNewAfterEvents?: number;
  /** Retries of notification deliveries (default 2 s initial, doubling, 8 attempts; tests pass milliseconds). */
  notifyRetry?: { initialMs: number; maxAttempts: number };
  /**
   * Run the short kinds without I/O (`noop`, `fail`) as local activities: in the worker that runs
   * the workflow, without a round trip through the server's activity queue (a chain step goes
   * from about one dev-server round trip to a fraction of it). Off by default.
   */
  localShortTasks?: boolean;
}

/**
 * A pipeline spec by reference: the workflow and its activities load it from the metastore
 * (a registered version, or the snapshot a direct start stored), checked by content hash.
 */
export interface SpecRef {
  tenant: string;
  pipelineId: string;
  /** Content hash (store/pipelines contentHash): what is loaded must hash to it. */
  hash: string;
  /** A registered version; absent for a snapshot (CLI or ad-hoc starts). */
  version?: number;
  tasks: number;
}

export interface PipelineRunInput {
  /** The spec inline (small specs, started without a metastore); else `specRef`. */
  spec?: PipelineSpec;
  specRef?: SpecRef;
  tenant: string;
  /** A Trigger, or a schedule's own label. */
  trigger: string;
  /** ISO timestamp; defaults to the workflow start time. */
  logicalDate?: string;
  params?: Record<string, string>;
  /** Run only these tasks (others end `excluded` and count as satisfied). */
  only?: string[];
  withUpstream?: boolean;
  /** Repair: final states of an earlier run; successful ones are reused, not re-run. */
  prior?: { runId: string; tasks: Record<string, TaskState> };
  /** Repair by reference: the earlier run whose successful tasks (in the metastore) are reused. */
  repairOf?: string;
  options?: PipelineRunOptions;
  /** Registered version (metastore) and content hash of the spec, for the runs index. */
  pipelineVersion?: number;
  specVersion?: string;
  /** Carried across continue-as-new, in the compact form of workflows/carry.ts. */
  carried?: CarriedState | RunState | CarriedV1;
}

/** What a run carries since scale-v1 (older forms replay through workflows/pipeline-v0.ts). */
export function isCarriedV1(c: PipelineRunInput['carried']): c is CarriedV1 {
  return !!c && 'v' in c;
}

/**
 * What a run carries across continue-as-new since scale-v1: a header and one character per
 * task (its status), in spec order; per-task details went to the metastore as deltas.
 * At most one byte per task (a 50,000-task pipeline carries about 50 KB).
 */
export interface CarriedV1 {
  v: 1;
  header: Omit<RunState, 'tasks' | 'counts' | 'tasksPartial' | 'failures' | 'taskCount'>;
  statuses: string;
  failures: { id: string; error: string; type?: string }[];
  /** Sensors stopped to continue as new: when each started (its deadline derives from it) carries over. */
  sensors?: Record<string, { since: number; polls: number }>;
  /** For notify rules: tasks that exhausted their retries and outputs with warnings so far (bounded). */
  notify?: { exhausted: { task: string; attempts: number }[]; warned: { task: string; checks: string[] }[] };
  /** External jobs still running, handed over to the next execution: task id → its externalJob's workflow id. */
  jobs?: Record<string, string>;
  /** Of those, the ones that reported their end before the handover. */
  jobResults?: Record<string, JobFinished>;
}

/** A task's state as the workflow reports it to the metastore (one delta per change). */
export interface TaskDelta extends TaskState {
  id: string;
}

/** What a task activity receives when the spec travels by reference: the worker loads and renders the task. */
export interface TaskRefInput {
  ref: SpecRef;
  taskId: string;
  run: RunContext;
  params: Record<string, string>;
}

/** What one task activity receives. */
export interface TaskActivityInput {
  task: Record<string, unknown> & { id: string; kind: string };
  run: RunContext;
  /**
   * A sensor whose whole poll loop runs in the activity: when it first started (epoch ms;
   * its deadline is that plus the task's waitTimeout) and the checks made before.
   */
  sensor?: { since: number; polls?: number };
}

/** What every task activity answers: the task's output and the attempt that produced it. */
export interface TaskEnvelope {
  output: TaskOutput;
  attempt: number;
}

/**
 * How a workflow calls a task activity: the task inline, or by reference (the worker loads
 * and renders it); a sensor adds its poll state.
 */
export type TaskCall = TaskActivityInput | (TaskRefInput & { sensor?: TaskActivityInput['sensor'] });

/** A task activity as the workflow proxies it. */
export type TaskActivity = (input: TaskCall) => Promise<TaskEnvelope>;

/** One task's state as a tuple: id, status index, attempts, start and end (epoch ms, 0 = none), extras. */
export type CarriedTask = [
  id: string,
  status: number,
  attempts: number,
  startedAt: number,
  endedAt: number,
  rest?: Partial<Pick<TaskState, 'output' | 'error' | 'errorType' | 'reusedFrom'>>,
];

/** The run state as carried across continue-as-new (see workflows/carry.ts). */
export interface CarriedState {
  header: Omit<RunState, 'tasks'>;
  tasks: CarriedTask[];
}

/** What a run writes to the metastore: its header, and at start/end the task rows to seed or close. */
export interface RunRecord {
  /** Since scale-v1 the header only (`tasks` empty): per-task state goes through recordTaskDeltas. */
  state: RunState;
  specVersion?: string;
  pipelineVersion?: number;
  error?: string;
  /** At a run's start: make its task rows (`pending`) from the stored spec, or from these ids. */
  seed?: { ref: SpecRef } | { ids: string[] };
  /** At a run's end: every task row still pending or running ends in this state (a cancelled run). */
  closeOpenTasks?: 'cancelled';
}
