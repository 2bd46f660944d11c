/**
 * Write-audit-publish records (migration 121): run-scoped catalog credentials, one audit
 * per (table, branch) with the snapshot of `main` it forked from, and the tables a run's
 * credential read. Snapshot ids are 64-bit: stored and compared as text.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from './db.js';
import { NS_SEP } from './iceberg.js';

export interface TableIdent {
  namespace: string[];
  name: string;
}

/** What a run's catalog credential may do: read the tenant's warehouse, write its outputs onto `branch`. */
export interface RunCredential {
  tenant: string;
  workflowId: string;
  runId: string;
  pipelineId: string;
  taskId: string;
  branch: string;
  outputs: TableIdent[];
  expiresAt: Date;
}

export type AuditStatus = 'staged' | 'published' | 'rejected' | 'conflict';
export interface AuditRow {
  tenant: string;
  namespace: string[];
  name: string;
  branch: string;
  workflowId: string;
  taskId: string;
  baseSnapshotId: string | null;
  snapshotId: string | null;
  status: AuditStatus;
  version: number | null;
  message: string | null;
}

/** Run credentials look like `strata_run_…`: the API tells them from keys by the prefix. */
export const RUN_TOKEN_PREFIX = 'strata_run_';
const hash = (s: string) => createHash('sha256').update(s).digest('hex');

/** The audit branch of one task of one run: `audit-{run}-{task}` in characters a ref name keeps readable. */
export function auditBranch(runId: string, taskId: string): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_');
  return `audit-${clean(runId)}-${clean(taskId)}`;
}

export class AuditStore {
  constructor(readonly db: Db) {}

  /** Mints a credential; the secret is returned once and only its hash is kept. */
  async issue(c: RunCredential): Promise<string> {
    const secret = `${RUN_TOKEN_PREFIX}${randomBytes(24).toString('base64url')}`;
    await this.db.query(
      `INSERT INTO iceberg_run_credentials (token_hash, tenant, workflow_id, run_id, pipeline_id, task_id, branch, outputs, expires_at)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
      [
        hash(secret),
        c.tenant,
        c.workflowId,
        c.runId,
        c.pipelineId,
        c.taskId,
        c.branch,
        JSON.stringify(c.outputs),
        c.expiresAt.toISOString(),
      ],
    );
    return secret;
  }

  /** The live credential for a secret (not revoked, not expired), or undefined. */
  async credential(secret: string): Promise<RunCredential | undefined> {
    const r = await this.db.query<Record<string, unknown>>(
      `SELECT tenant, workflow_id, run_id, pipeline_id, task_id, branch, outputs, expires_at FROM iceberg_run_credentials
       WHERE token_hash=$1 AND revoked_at IS NULL AND expires_at > now()`,
      [hash(secret)],
    );
    const x = r.rows[0];
    if (!x) return undefined;
    return {
      tenant: String(x.tenant),
      workflowId: String(x.workflow_id),
      runId: String(x.run_id),
      pipelineId: String(x.pipeline_id),
      taskId: String(x.task_id),
      branch: String(x.branch),
      outputs: (typeof x.outputs === 'string' ? JSON.parse(x.outputs) : x.outputs) as TableIdent[],
      expiresAt: new Date(String(x.expires_at instanceof Date ? x.expires_at.toISOString() : x.expires_at)),
    };
  }

  /** Ends every credential of a run's task: once Strata audits its output, the job commits nothing more. */
  async revoke(tenant: string, workflowId: string, taskId: string): Promise<number> {
    const r = await this.db.query(
      `UPDATE iceberg_run_credentials SET revoked_at=now() WHERE tenant=$1 AND workflow_id=$2 AND task_id=$3 AND revoked_at IS NULL`,
      [tenant, workflowId, taskId],
    );
    return r.rowCount;
  }

  async audit(tenant: string, t: TableIdent, branch: string): Promise<AuditRow | undefined> {
    const r = await this.db.query<Record<string, string | number | null>>(
      `SELECT * FROM iceberg_audits WHERE tenant=$1 AND namespace=$2 AND name=$3 AND branch=$4`,
      [tenant, t.namespace.join(NS_SEP), t.name, branch],
    );
    return r.rows[0] ? toAudit(r.rows[0]) : undefined;
  }

  /** Records the branch's base (main when the branch was made); a second call keeps the first. */
  async begin(
    tenant: string,
    t: TableIdent,
    branch: string,
    o: { workflowId: string; taskId: string; baseSnapshotId: string | null },
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO iceberg_audits (tenant, namespace, name, branch, workflow_id, task_id, base_snapshot_id)
       VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING`,
      [tenant, t.namespace.join(NS_SEP), t.name, branch, o.workflowId, o.taskId, o.baseSnapshotId],
    );
  }

  async finish(
    tenant: string,
    t: TableIdent,
    branch: string,
    o: { status: AuditStatus; snapshotId?: string | null; version?: number | null; message?: string | null },
  ): Promise<void> {
    await this.db.query(
      `UPDATE iceberg_audits SET status=$5, snapshot_id=coalesce($6, snapshot_id), version=coalesce($7, version), message=$8, updated_at=now()
       WHERE tenant=$1 AND namespace=$2 AND name=$3 AND branch=$4`,
      [
        tenant,
        t.namespace.join(NS_SEP),
        t.name,
        branch,
        o.status,
        o.snapshotId ?? null,
        o.version ?? null,
        o.message ?? null,
      ],
    );
  }

  async listAudits(tenant: string, t: TableIdent): Promise<AuditRow[]> {
    const r = await this.db.query<Record<string, string | number | null>>(
      `SELECT * FROM iceberg_audits WHERE tenant=$1 AND namespace=$2 AND name=$3 ORDER BY created_at`,
      [tenant, t.namespace.join(NS_SEP), t.name],
    );
    return r.rows.map(toAudit);
  }

  async recordRead(tenant: string, branch: string, t: TableIdent, snapshotId: string): Promise<void> {
    await this.db.query(
      `INSERT INTO iceberg_run_reads (tenant, branch, namespace, name, snapshot_id) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING`,
      [tenant, branch, t.namespace.join(NS_SEP), t.name, snapshotId],
    );
  }

  async reads(tenant: string, branch: string): Promise<(TableIdent & { snapshotId: string })[]> {
    const r = await this.db.query<{ namespace: string; name: string; snapshot_id: string }>(
      `SELECT namespace, name, snapshot_id FROM iceberg_run_reads WHERE tenant=$1 AND branch=$2 ORDER BY namespace, name, read_at`,
      [tenant, branch],
    );
    return r.rows.map((x) => ({ namespace: x.namespace.split(NS_SEP), name: x.name, snapshotId: x.snapshot_id }));
  }
}

function toAudit(x: Record<string, string | number | null>): AuditRow {
  return {
    tenant: String(x.tenant),
    namespace: String(x.namespace).split(NS_SEP),
    name: String(x.name),
    branch: String(x.branch),
    workflowId: String(x.workflow_id),
    taskId: String(x.task_id),
    baseSnapshotId: x.base_snapshot_id === null ? null : String(x.base_snapshot_id),
    snapshotId: x.snapshot_id === null ? null : String(x.snapshot_id),
    status: x.status as AuditStatus,
    version: x.version === null ? null : Number(x.version),
    message: x.message === null ? null : String(x.message),
  };
}
