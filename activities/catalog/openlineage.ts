/**
 * OpenLineage run events (https://openlineage.io/spec/2-0-2/OpenLineage.json): START when
 * a dataset-producing task begins, COMPLETE or FAIL when it ends, with its input and
 * output datasets. Sent to an HTTP endpoint (POST /api/v1/lineage, as Marquez takes it)
 * or appended to a file as JSON lines. Lineage is advisory: a sink that is down is
 * logged and never fails the task.
 */
import { errorMessage } from '../../schemas/errors.js';
import { createHash } from 'node:crypto';
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ColumnInfo } from '../../store/catalog.js';

export const OL_SCHEMA_URL = 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent';
export const OL_PRODUCER = 'https://github.com/strata/strata';

export interface LineageSink {
  emit(event: RunEvent): Promise<void>;
}

export interface OlDataset {
  namespace: string;
  name: string;
  facets?: Record<string, unknown>;
}

export interface RunEvent {
  eventType: 'START' | 'COMPLETE' | 'FAIL';
  eventTime: string;
  producer: string;
  schemaURL: string;
  run: { runId: string; facets?: Record<string, unknown> };
  job: { namespace: string; name: string; facets?: Record<string, unknown> };
  inputs: OlDataset[];
  outputs: OlDataset[];
}

/** A stable UUID for one task of one run (every attempt reports the same run). */
export function taskRunUuid(workflowId: string, taskId: string): string {
  const h = createHash('sha1').update(`${workflowId}\u0000${taskId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function schemaFacet(cols: ColumnInfo[]) {
  return {
    schema: {
      _producer: OL_PRODUCER,
      _schemaURL: 'https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet',
      fields: cols.map((c) => ({ name: c.name, type: c.type })),
    },
  };
}

export function runEvent(e: Omit<RunEvent, 'producer' | 'schemaURL' | 'eventTime'> & { eventTime?: string }): RunEvent {
  return {
    eventTime: e.eventTime ?? new Date().toISOString(),
    producer: OL_PRODUCER,
    schemaURL: OL_SCHEMA_URL,
    ...e,
  };
}

/** STRATA_OPENLINEAGE_URL (http…) or STRATA_OPENLINEAGE_FILE; none = no events. */
export function lineageSinkFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  warn: (m: string) => void = (m) => console.warn(m),
): LineageSink | undefined {
  if (env.STRATA_OPENLINEAGE_URL) return httpSink(env.STRATA_OPENLINEAGE_URL, warn);
  if (env.STRATA_OPENLINEAGE_FILE) return fileSink(env.STRATA_OPENLINEAGE_FILE);
  return undefined;
}

export function fileSink(file: string): LineageSink {
  return {
    async emit(event) {
      await mkdir(path.dirname(path.resolve(file)), { recursive: true });
      await appendFile(file, JSON.stringify(event) + '\n');
    },
  };
}

export function httpSink(url: string, warn: (m: string) => void): LineageSink {
  const endpoint = /\/api\/v1\/lineage\/?$/.test(url) ? url : `${url.replace(/\/$/, '')}/api/v1/lineage`;
  return {
    async emit(event) {
      try {
        const r = await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(event),
          signal: AbortSignal.timeout(5000),
        });
        if (!r.ok) warn(`openlineage: ${endpoint} answered ${r.status}`);
      } catch (e) {
        warn(`openlineage: cannot post to ${endpoint}: ${errorMessage(e)}`);
      }
    },
  };
}
