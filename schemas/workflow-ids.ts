/**
 * Every Temporal id Strata makes names its tenant second: `pipeline/{tenant}/{pipeline}/{runKey}`
 * (and its external-job children `…/task/{task}`, and scheduled runs with the fire time
 * appended), `reconcile/{tenant}/…`, `cluster/{tenant}/{name}`, `quota/{tenant}/clusters`
 * and schedules `schedule/{tenant}/{pipeline}/{id}`. The payload codec keys encryption by
 * that tenant, so this is the one place that reads it back. Importable by workflows.
 * The search attributes that make runs findable in the Temporal UI live here too.
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';

export const TENANT_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;

/** The id kinds that carry a tenant (the first path segment). */
export const TENANT_ID_KINDS = ['pipeline', 'reconcile', 'cluster', 'quota', 'schedule'] as const;

/** The tenant a workflow (or schedule) id belongs to; undefined for ids Strata did not make. */
export function tenantOfWorkflowId(id: string | undefined | null): string | undefined {
  if (!id) return undefined;
  const [kind, tenant, rest] = id.split('/', 3);
  if (rest === undefined || !(TENANT_ID_KINDS as readonly string[]).includes(kind)) return undefined;
  return TENANT_PATTERN.test(tenant) ? tenant : undefined;
}

/** The id of one pipeline run. */
export function workflowIdFor(tenant: string, pipelineId: string, runKey: string): string {
  return `pipeline/${tenant}/${pipelineId}/${runKey}`;
}

/** Search attributes on every run: findable by pipeline, tenant and trigger in the Temporal UI. */
export const SA_PIPELINE = defineSearchAttributeKey('StrataPipeline', SearchAttributeType.KEYWORD);
export const SA_TENANT = defineSearchAttributeKey('StrataTenant', SearchAttributeType.KEYWORD);
export const SA_TRIGGER = defineSearchAttributeKey('StrataTrigger', SearchAttributeType.KEYWORD);
