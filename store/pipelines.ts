/** Pipelines and their immutable, content-addressed versions. */
import { createHash } from 'node:crypto';
import type { PipelineSpec } from '../schemas/pipeline.js';
import type { Db } from './db.js';

export function contentHash(spec: PipelineSpec): string {
  return createHash('sha256').update(stableJson(spec)).digest('hex');
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export async function ensureTenant(db: Db, tenant: string) {
  await db.query('INSERT INTO tenants (id) VALUES ($1) ON CONFLICT DO NOTHING', [tenant]);
}

export interface Registered {
  pipelineId: string;
  version: number;
  contentHash: string;
  created: boolean;
}

/** Registers a spec; the same content again is a no-op that returns the existing version. */
export async function registerPipeline(
  db: Db,
  tenant: string,
  spec: PipelineSpec,
  source?: string,
): Promise<Registered> {
  const hash = contentHash(spec);
  return db.tx(async (t) => {
    await ensureTenant(t, tenant);
    await t.query('INSERT INTO pipelines (tenant, id, current_version) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING', [
      tenant,
      spec.id,
    ]);
    const p = await t.query<{ current_version: number }>(
      'SELECT current_version FROM pipelines WHERE tenant = $1 AND id = $2 FOR UPDATE',
      [tenant, spec.id],
    );
    const same = await t.query<{ version: number }>(
      'SELECT version FROM pipeline_versions WHERE tenant = $1 AND pipeline_id = $2 AND content_hash = $3',
      [tenant, spec.id, hash],
    );
    if (same.rows[0]) {
      const v = same.rows[0].version;
      if (p.rows[0].current_version !== v)
        await t.query('UPDATE pipelines SET current_version = $3, updated_at = now() WHERE tenant = $1 AND id = $2', [
          tenant,
          spec.id,
          v,
        ]);
      return { pipelineId: spec.id, version: v, contentHash: hash, created: false };
    }
    const max = await t.query<{ v: number }>(
      'SELECT COALESCE(max(version), 0)::int AS v FROM pipeline_versions WHERE tenant = $1 AND pipeline_id = $2',
      [tenant, spec.id],
    );
    const version = max.rows[0].v + 1;
    await t.query(
      'INSERT INTO pipeline_versions (tenant, pipeline_id, version, content_hash, spec, source) VALUES ($1, $2, $3, $4, $5, $6)',
      [tenant, spec.id, version, hash, JSON.stringify(spec), source ?? null],
    );
    await t.query('UPDATE pipelines SET current_version = $3, updated_at = now() WHERE tenant = $1 AND id = $2', [
      tenant,
      spec.id,
      version,
    ]);
    return { pipelineId: spec.id, version, contentHash: hash, created: true };
  });
}

export interface PipelineRow {
  id: string;
  current_version: number;
  created_at: Date;
  updated_at: Date;
}

export async function listPipelines(db: Db, tenant: string): Promise<PipelineRow[]> {
  return (
    await db.query<PipelineRow>(
      'SELECT id, current_version, created_at, updated_at FROM pipelines WHERE tenant = $1 ORDER BY id',
      [tenant],
    )
  ).rows;
}

export async function getPipeline(
  db: Db,
  tenant: string,
  id: string,
  version?: number,
): Promise<{ pipeline: PipelineRow; version: number; spec: PipelineSpec; contentHash: string } | undefined> {
  const p = (
    await db.query<PipelineRow>(
      'SELECT id, current_version, created_at, updated_at FROM pipelines WHERE tenant = $1 AND id = $2',
      [tenant, id],
    )
  ).rows[0];
  if (!p) return undefined;
  const v = (
    await db.query<{ version: number; spec: PipelineSpec; content_hash: string }>(
      'SELECT version, spec, content_hash FROM pipeline_versions WHERE tenant = $1 AND pipeline_id = $2 AND version = $3',
      [tenant, id, version ?? p.current_version],
    )
  ).rows[0];
  if (!v) return undefined;
  return { pipeline: p, version: v.version, spec: v.spec, contentHash: v.content_hash };
}

export async function listVersions(db: Db, tenant: string, id: string) {
  return (
    await db.query<{ version: number; content_hash: string; created_at: Date }>(
      'SELECT version, content_hash, created_at FROM pipeline_versions WHERE tenant = $1 AND pipeline_id = $2 ORDER BY version DESC',
      [tenant, id],
    )
  ).rows;
}

export async function deletePipeline(db: Db, tenant: string, id: string): Promise<boolean> {
  return (await db.query('DELETE FROM pipelines WHERE tenant = $1 AND id = $2', [tenant, id])).rowCount > 0;
}
