/**
 * Notification deliveries in the metastore, keyed by (run, rule, event): claimed before the
 * first send (so a retried or replayed delivery finds the row), then marked delivered or
 * failed with the attempts and the last error (already free of secrets).
 */
import type { DeliveryRecord, NotifyEvent } from '../schemas/notify.js';
import type { Db } from './db.js';

export interface DeliveryKey {
  runId: string;
  rule: string;
  event: NotifyEvent;
}

/** Inserts the row if it is not there; answers its status now (delivered rows are not sent again). */
export async function claimDelivery(
  db: Db,
  k: DeliveryKey & { tenant: string; pipelineId: string; channel: string; channelType: string },
): Promise<{ status: DeliveryRecord['status']; attempts: number }> {
  await db.query(
    `INSERT INTO notification_deliveries (run_id, rule, event, tenant, pipeline_id, channel, channel_type)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, rule, event) DO NOTHING`,
    [k.runId, k.rule, k.event, k.tenant, k.pipelineId, k.channel, k.channelType],
  );
  const r = await db.query<{ status: DeliveryRecord['status']; attempts: number }>(
    'SELECT status, attempts FROM notification_deliveries WHERE run_id = $1 AND rule = $2 AND event = $3',
    [k.runId, k.rule, k.event],
  );
  return r.rows[0];
}

/** Records one attempt's outcome; `final` turns a failed attempt into a failed delivery. */
export async function recordAttempt(
  db: Db,
  k: DeliveryKey,
  o: { ok: boolean; attempt: number; error?: string; responseStatus?: number; final?: boolean },
): Promise<void> {
  await db.query(
    `UPDATE notification_deliveries
        SET attempts = GREATEST(attempts, $4),
            status = CASE WHEN status = 'delivered' THEN status WHEN $5 THEN 'delivered' WHEN $6 THEN 'failed' ELSE status END,
            last_error = CASE WHEN $5 THEN last_error ELSE $7 END,
            response_status = COALESCE($8, response_status),
            delivered_at = CASE WHEN $5 AND delivered_at IS NULL THEN now() ELSE delivered_at END,
            updated_at = now()
      WHERE run_id = $1 AND rule = $2 AND event = $3`,
    [k.runId, k.rule, k.event, o.attempt, o.ok, !!o.final, o.error ?? null, o.responseStatus ?? null],
  );
}

interface Row {
  run_id: string;
  rule: string;
  event: NotifyEvent;
  channel: string;
  channel_type: string;
  status: DeliveryRecord['status'];
  attempts: number;
  last_error: string | null;
  response_status: number | null;
  created_at: Date;
  delivered_at: Date | null;
}

/** A run's deliveries, tenant-scoped (another tenant's run has none). */
export async function listDeliveries(db: Db, tenant: string, runId: string): Promise<DeliveryRecord[]> {
  const r = await db.query<Row>(
    `SELECT run_id, rule, event, channel, channel_type, status, attempts, last_error, response_status, created_at, delivered_at
       FROM notification_deliveries WHERE tenant = $1 AND run_id = $2 ORDER BY created_at, rule, event`,
    [tenant, runId],
  );
  return r.rows.map(toRecord);
}

function toRecord(x: Row): DeliveryRecord {
  return {
    runId: x.run_id,
    rule: x.rule,
    event: x.event,
    channel: x.channel,
    channelType: x.channel_type,
    status: x.status,
    attempts: x.attempts,
    ...(x.last_error ? { lastError: x.last_error } : {}),
    ...(x.response_status !== null ? { responseStatus: x.response_status } : {}),
    createdAt: x.created_at.toISOString(),
    ...(x.delivered_at ? { deliveredAt: x.delivered_at.toISOString() } : {}),
  };
}

/** A schedule's `schedule_missed` deliveries (keyed `{schedule id}#{n}`), newest first. */
export async function listScheduleDeliveries(db: Db, tenant: string, scheduleId: string): Promise<DeliveryRecord[]> {
  const r = await db.query<Row>(
    `SELECT run_id, rule, event, channel, channel_type, status, attempts, last_error, response_status, created_at, delivered_at
       FROM notification_deliveries WHERE tenant = $1 AND run_id LIKE $2 ORDER BY created_at DESC, rule LIMIT 200`,
    [tenant, `${scheduleId.replace(/[\\%_]/g, (c) => `\\${c}`)}#%`],
  );
  return r.rows.map(toRecord);
}
