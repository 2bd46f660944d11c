/**
 * A run's per-task state as the pipeline workflow keeps it: a status code per task (every
 * task), full details for the tasks this execution touched, the failures worth naming, and
 * the deltas the metastore has not acknowledged yet, flushed in bounded batches with one
 * write in flight. What it answers (queries, result, failure details) is bounded
 * (RUN_ANSWER_LIMITS) whatever the pipeline's size.
 */
import { CancellationScope } from '@temporalio/workflow';
import {
  RUN_ANSWER_LIMITS,
  TASK_STATUSES,
  type CarriedV1,
  type RunState,
  type TaskDelta,
  type TaskState,
  type TaskStatus,
} from '../../schemas/run.js';

/** One character per status in what a run carries across continue-as-new. */
export const STATUSES: readonly TaskStatus[] = TASK_STATUSES;
const CODES = 'prsfkucx';

/** Deltas go to the metastore in batches of at most this many tasks or bytes, or after this long. */
const FLUSH = { tasks: 500, bytes: 256 * 1024, everyMs: 2000 };

export type RunHeader = CarriedV1['header'];

export class TaskBook {
  ids: string[] = [];
  private index = new Map<string, number>();
  private status: number[] = [];
  readonly counts = new Array<number>(STATUSES.length).fill(0);
  readonly details = new Map<string, TaskState>();
  private readonly deltas = new Map<string, TaskDelta>();
  private flushing: TaskDelta[] = [];
  private inFlight: Promise<void> | undefined;
  private lastFlush = Date.now();

  constructor(
    private readonly header: RunHeader,
    readonly failures: CarriedV1['failures'],
    private readonly record: (deltas: TaskDelta[]) => Promise<void>,
  ) {}

  /** The tasks, in spec order, with the statuses an earlier execution carried (all pending when new). */
  load(ids: string[], carried?: string) {
    this.ids = ids;
    this.index = new Map(ids.map((id, i) => [id, i]));
    this.status = ids.map((_, i) => (carried !== undefined ? Math.max(0, CODES.indexOf(carried[i] ?? 'p')) : 0));
    for (const s of this.status) this.counts[s]++;
  }

  has(id: string): boolean {
    return this.index.has(id);
  }

  position(id: string): number {
    const i = this.index.get(id);
    if (i === undefined) throw new Error(`task ${id} is not one of this run's tasks`);
    return i;
  }

  statusOf(id: string): TaskStatus {
    return STATUSES[this.status[this.position(id)]];
  }

  statusAt(i: number): TaskStatus {
    return STATUSES[this.status[i]];
  }

  count(s: TaskStatus): number {
    return this.counts[STATUSES.indexOf(s)];
  }

  /** What the next execution carries: one character per task. */
  carried(): string {
    return this.status.map((s) => CODES[s]).join('');
  }

  set(id: string, s: TaskStatus, patch: Partial<TaskState> = {}) {
    const i = this.position(id);
    this.move(i, s);
    const t: TaskState = { ...(this.details.get(id) ?? { attempts: 0 }), ...patch, status: s };
    if (t.error && t.error.length > RUN_ANSWER_LIMITS.errorChars)
      t.error = `${t.error.slice(0, RUN_ANSWER_LIMITS.errorChars)}…`;
    this.details.set(id, t);
    this.deltas.set(id, { id, ...t });
    if ((s === 'failed' || s === 'cancelled') && this.failures.length < RUN_ANSWER_LIMITS.failures && t.error)
      this.failures.push({ id, error: t.error.slice(0, 500), ...(t.errorType ? { type: t.errorType } : {}) });
  }

  /**
   * A cancelled run: every task not final ends cancelled. Tasks this execution touched get a
   * delta; the rest are closed by the run record's `closeOpenTasks` in one statement.
   */
  cancelOpen(now: string, isFinal: (s: TaskStatus) => boolean) {
    for (let i = 0; i < this.ids.length; i++) {
      const id = this.ids[i];
      if (isFinal(STATUSES[this.status[i]])) continue;
      if (this.details.has(id))
        this.set(id, 'cancelled', { endedAt: this.details.get(id)?.startedAt ? now : undefined });
      else this.move(i, 'cancelled');
    }
  }

  private move(i: number, s: TaskStatus) {
    this.counts[this.status[i]]--;
    this.status[i] = STATUSES.indexOf(s);
    this.counts[this.status[i]]++;
  }

  // ---- deltas to the metastore: one write in flight, batches bounded in tasks and bytes

  get pending(): number {
    return this.deltas.size;
  }

  /** Flushes when a batch is full or the last flush is old enough, and none is in flight. */
  maybeFlush() {
    if (this.inFlight || !this.deltas.size) return;
    if (this.deltas.size < FLUSH.tasks && Date.now() - this.lastFlush < FLUSH.everyMs) return;
    this.flushOnce();
  }

  /** Until the metastore has every delta. */
  async flushAll() {
    for (;;) {
      if (this.inFlight) await this.inFlight;
      if (!this.deltas.size) return;
      this.flushOnce();
    }
  }

  private flushOnce() {
    const batch = this.takeBatch();
    if (!batch.length) return;
    this.flushing = batch;
    this.lastFlush = Date.now();
    this.inFlight = CancellationScope.nonCancellable(() => this.record(batch)).then(
      () => {
        this.flushing = [];
        this.inFlight = undefined;
      },
      () => {
        // Put back what no newer delta replaced; the next flush sends it again.
        for (const d of batch) if (!this.deltas.has(d.id)) this.deltas.set(d.id, d);
        this.flushing = [];
        this.inFlight = undefined;
      },
    );
  }

  private takeBatch(): TaskDelta[] {
    const batch: TaskDelta[] = [];
    let bytes = 0;
    for (const [id, d] of this.deltas) {
      const size = JSON.stringify(d).length;
      if (batch.length && (batch.length >= FLUSH.tasks || bytes + size > FLUSH.bytes)) break;
      batch.push(d);
      bytes += size;
      this.deltas.delete(id);
    }
    return batch;
  }

  // ---- answers

  countsObject(): Partial<Record<TaskStatus, number>> {
    const out: Partial<Record<TaskStatus, number>> = {};
    this.counts.forEach((n, i) => {
      if (n) out[STATUSES[i]] = n;
    });
    return out;
  }

  /** One page of tasks in spec order after `after` (the tasks query). */
  page(after: string | undefined, limit: number | undefined) {
    const n = Math.max(1, Math.min(limit ?? RUN_ANSWER_LIMITS.page, RUN_ANSWER_LIMITS.page));
    const from = after === undefined ? 0 : (this.index.get(after) ?? -1) + 1;
    const tasks = this.ids
      .slice(from, from + n)
      .map((id, k): [string, TaskState] => [
        id,
        this.details.get(id) ?? { status: STATUSES[this.status[from + k]], attempts: 0 },
      ]);
    return { tasks, ...(from + n < this.ids.length ? { next: this.ids[from + n - 1] } : {}) };
  }

  /** What the metastore may not have yet: unacknowledged deltas and running tasks (the live query). */
  live() {
    const tasks: Record<string, TaskState> = {};
    for (const d of [...this.flushing, ...this.deltas.values()]) tasks[d.id] = stripId(d);
    for (const [id, t] of this.details) if (t.status === 'running') tasks[id] = t;
    return { status: this.header.status, counts: this.countsObject(), tasks };
  }

  /**
   * The run as a workflow answers it: header, counts, failures and tasks in spec order up to
   * the limits. `tasksPartial` when tasks are left out or some task's details live only in
   * the metastore (it finished in an earlier execution of a run that continued as new).
   */
  state(limits: { tasks: number; bytes: number } = RUN_ANSWER_LIMITS): RunState {
    const tasks: Record<string, TaskState> = {};
    let partial = false;
    let bytes = 0;
    for (let i = 0; i < this.ids.length; i++) {
      const s = STATUSES[this.status[i]];
      const t = this.details.get(this.ids[i]) ?? { status: s, attempts: 0 };
      if (!this.details.has(this.ids[i]) && s !== 'pending') partial = true;
      const size = JSON.stringify(t).length + this.ids[i].length + 4;
      if (i >= limits.tasks || bytes + size > limits.bytes) {
        partial = true;
        break;
      }
      bytes += size;
      tasks[this.ids[i]] = t;
    }
    return {
      ...this.header,
      tasks,
      counts: this.countsObject(),
      taskCount: this.ids.length,
      ...(partial ? { tasksPartial: true } : {}),
      ...(this.failures.length ? { failures: this.failures } : {}),
    };
  }

  /** The run's progress line for the Temporal UI. */
  progress(): string {
    const line = Object.entries(this.countsObject())
      .map(([s, n]) => `${s}: ${n}`)
      .join(' · ');
    return `**${this.header.pipelineId}** — ${this.header.status}\n\n${line}`;
  }
}

function stripId(d: TaskDelta): TaskState {
  const { id: _id, ...t } = d;
  return t;
}
