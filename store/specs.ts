/**
 * Specs by reference (migration 070): a run names its spec by tenant, pipeline, content
 * hash and (when registered) version; workers load it from here. Snapshots hold the specs
 * of runs started with a spec in hand (CLI, transform); registered versions stay in
 * pipeline_versions and are not copied.
 */
import type { PipelineSpec } from '../schemas/pipeline.js';
import type { SpecRef } from '../schemas/run.js';
import type { Db } from './db.js';
import { contentHash } from './pipelines.js';

/** Stores a snapshot of `spec` unless the tenant has one with the same content; returns its ref. */
export async function snapshotSpec(db: Db, tenant: string, spec: PipelineSpec): Promise<SpecRef> {
  const hash = contentHash(spec);
  const have = await db.query('SELECT 1 FROM spec_snapshots WHERE tenant = $1 AND content_hash = $2', [tenant, hash]);
  if (!have.rowCount)
    await db.query(
      'INSERT INTO spec_snapshots (tenant, content_hash, pipeline_id, spec) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [tenant, hash, spec.id, JSON.stringify(spec)],
    );
  return { tenant, pipelineId: spec.id, hash, tasks: spec.tasks.length };
}

/** The spec a ref names, or undefined. The content hash is checked: a ref never loads other content. */
export async function loadSpec(db: Db, ref: SpecRef): Promise<PipelineSpec | undefined> {
  const r =
    ref.version !== undefined
      ? await db.query<{ spec: PipelineSpec }>(
          'SELECT spec FROM pipeline_versions WHERE tenant = $1 AND pipeline_id = $2 AND version = $3 AND content_hash = $4',
          [ref.tenant, ref.pipelineId, ref.version, ref.hash],
        )
      : { rows: [] as { spec: PipelineSpec }[] };
  const row =
    r.rows[0] ??
    (
      await db.query<{ spec: PipelineSpec }>(
        'SELECT spec FROM spec_snapshots WHERE tenant = $1 AND content_hash = $2',
        [ref.tenant, ref.hash],
      )
    ).rows[0];
  if (!row) return undefined;
  const spec = typeof row.spec === 'string' ? (JSON.parse(row.spec) as PipelineSpec) : row.spec;
  if (contentHash(spec) !== ref.hash)
    throw new Error(`spec ${ref.pipelineId} in the metastore does not match its content hash ${ref.hash}`);
  return spec;
}

/** The task ids of a stored spec, in order, read inside the database (the spec is not shipped). */
export async function specTaskIds(db: Db, ref: SpecRef): Promise<string[]> {
  const fromVersion = `SELECT t->>'id' AS id FROM pipeline_versions v, jsonb_array_elements(v.spec->'tasks') WITH ORDINALITY AS e(t, n) WHERE v.tenant = $1 AND v.pipeline_id = $2 AND v.version = $3 AND v.content_hash = $4 ORDER BY n`;
  const fromSnapshot = `SELECT t->>'id' AS id FROM spec_snapshots s, jsonb_array_elements(s.spec->'tasks') WITH ORDINALITY AS e(t, n) WHERE s.tenant = $1 AND s.content_hash = $2 ORDER BY n`;
  if (ref.version !== undefined) {
    const r = await db.query<{ id: string }>(fromVersion, [ref.tenant, ref.pipelineId, ref.version, ref.hash]);
    if (r.rows.length) return r.rows.map((x) => x.id);
  }
  return (await db.query<{ id: string }>(fromSnapshot, [ref.tenant, ref.hash])).rows.map((x) => x.id);
}
