/**
 * The trigger dispatcher: starts the workflows of triggers the API accepted into the
 * outbox (`store/triggers.ts`). Runs in each API process; replicas share the work through
 * row claims (`FOR UPDATE SKIP LOCKED`) with a lease, so a dispatcher that dies mid-start
 * leaves its claims to lapse and another (or its restart) takes them. Each start uses the
 * trigger's workflow id with REJECT_DUPLICATE: a start repeated after a lost answer finds
 * the run it made and records that, so a trigger is never run twice.
 */
import { RequestError } from '../schemas/errors.js';
import { type PreparedStart, type RunsService } from '../client/runs.js';
import type { Db } from '../store/db.js';
import { claimTriggers, markFailedToStart, markRetry, pruneTriggers, type TriggerRow } from '../store/triggers.js';

/**
 * gRPC codes of a start that no retry can fix: invalid argument (a payload over the limit,
 * a bad search attribute), not found (no such namespace), already exists handled apart,
 * permission denied, failed precondition, out of range, unimplemented, unauthenticated.
 * Anything else (unavailable, deadline exceeded, resource exhausted, aborted, internal,
 * unknown) is transient: the trigger waits and tries again.
 */
const PERMANENT_CODES = new Set([3, 5, 7, 9, 11, 12, 16]);

/** A failed start's message with the server's reason (a client error wraps the gRPC status that says why). */
export function startErrorMessage(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, depth = 0; c && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    const text =
      typeof (c as { details?: unknown }).details === 'string' && (c as { details: string }).details
        ? (c as { details: string }).details
        : c instanceof Error
          ? c.message
          : typeof c === 'string'
            ? c
            : JSON.stringify(c);
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
  }
  return parts.join(': ');
}

/** Whether a failed start is a refusal no retry fixes (see PERMANENT_CODES), and why. */
export function permanentStartError(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof RequestError) return c.status < 500;
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'number' && PERMANENT_CODES.has(code)) return true;
    const name = (c as { name?: unknown }).name;
    if (name === 'PayloadConverterError' || name === 'ValueError' || name === 'DataConverterError') return true;
  }
  return false;
}

export interface DispatcherOptions {
  /** Workflow starts in flight at once. */
  concurrency?: number;
  /** How long a claim holds before another dispatcher may take the trigger. */
  leaseMs?: number;
  /** Look for work this often when nothing wakes the dispatcher (another replica's triggers, retries). */
  idleMs?: number;
  /** Keep started triggers this long (Idempotency-Key answers `existing` from them). */
  keepMs?: number;
  /** Attempts at a start that fails permanently before its trigger is dead-lettered (`failed_to_start`). */
  permanentAttempts?: number;
  log?: (msg: string) => void;
}

export class TriggerDispatcher {
  private readonly o: Required<DispatcherOptions>;
  private readonly inflight = new Set<Promise<void>>();
  private wake?: () => void;
  private kicked = false;
  private stopping = false;
  private loop?: Promise<void>;
  private lastPrune = 0;
  started = 0;
  failedToStart = 0;

  constructor(
    private readonly db: Db,
    private readonly runs: RunsService,
    opts: DispatcherOptions = {},
  ) {
    this.o = {
      concurrency: 16,
      leaseMs: 30_000,
      idleMs: 500,
      keepMs: 7 * 24 * 3600_000,
      permanentAttempts: 3,
      log: (m) => console.error(m),
      ...opts,
    };
  }

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  /** New work (or a free slot): look now instead of at the next idle tick. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /** Stops claiming, lets starts in flight finish. Unclaimed triggers wait for the next dispatcher. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.kick();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      this.kicked = false;
      let claimed = 0;
      const free = this.o.concurrency - this.inflight.size;
      if (free > 0) {
        try {
          const rows = await claimTriggers<PreparedStart>(this.db, this.runs.config.taskQueue, free, this.o.leaseMs);
          claimed = rows.length;
          for (const row of rows) this.track(this.dispatch(row));
          await this.maybePrune();
        } catch (e) {
          this.o.log(`strata dispatcher: cannot read the trigger outbox: ${(e as Error).message}`);
        }
      }
      if (this.stopping) break;
      // Full, or nothing waiting: sleep until a trigger arrives, a start finishes, or the idle tick.
      if ((claimed === 0 || claimed === free) && !this.kicked) {
        await new Promise<void>((res) => {
          const t = setTimeout(res, this.o.idleMs);
          this.wake = () => {
            clearTimeout(t);
            res();
          };
        });
        this.wake = undefined;
      }
    }
    await Promise.all(this.inflight);
  }

  private track(p: Promise<void>) {
    this.inflight.add(p);
    void p.finally(() => {
      this.inflight.delete(p);
      this.kick();
    });
  }

  private async dispatch(row: TriggerRow<PreparedStart>): Promise<void> {
    try {
      await this.runs.startTrigger(row);
      this.started++;
    } catch (e) {
      const msg = startErrorMessage(e);
      // Refused for good (a few attempts, in case the refusal was a passing state): dead-letter it.
      if (permanentStartError(e) && row.attempts >= this.o.permanentAttempts) {
        this.o.log(
          `strata dispatcher: starting ${row.workflow_id} failed for good after ${row.attempts} attempts: ${msg}`,
        );
        this.failedToStart++;
        await markFailedToStart(
          this.db,
          row.workflow_id,
          `the run could not start (${row.attempts} attempts): ${msg}`,
        ).catch(() => undefined);
        return;
      }
      // Temporal unreachable or overloaded: back off (1 s doubling to 1 min) and try again; the trigger is kept.
      const retryMs = Math.min(60_000, 1000 * 2 ** Math.min(6, row.attempts - 1));
      this.o.log(
        `strata dispatcher: starting ${row.workflow_id} failed (attempt ${row.attempts}), retrying in ${retryMs} ms: ${e instanceof RequestError ? e.message : msg}`,
      );
      await markRetry(this.db, row.workflow_id, msg, retryMs).catch(() => undefined);
    }
  }

  private async maybePrune() {
    if (Date.now() - this.lastPrune < 600_000) return;
    this.lastPrune = Date.now();
    await pruneTriggers(this.db, this.o.keepMs);
  }
}
