/**
 * Bodies of /api/v1/ingestion/{sources|destinations|connections}: Airbyte's create and patch
 * requests, strict, with the workspace left to Strata (each tenant maps to one Airbyte
 * workspace, STRATA_AIRBYTE_WORKSPACES). A connector `configuration` may hold secrets: no
 * message built here quotes its values.
 */
import { z } from 'zod';
import { envPairs } from './external.js';

const Id = (what: string) => z.guid(`${what} is a UUID`);
const Name = z.string().trim().min(1, 'write a name').max(255, 'at most 255 characters');
/** Optional: Strata fills it in from the tenant's mapping; naming another workspace is refused. */
const WorkspaceId = Id('an Airbyte workspace id').optional();
const Configuration = z.record(z.string(), z.unknown(), 'configuration is an object of the connector’s settings');

function needsType(typeKey: 'sourceType' | 'destinationType') {
  return (b: { definitionId?: string; configuration?: Record<string, unknown> }, ctx: z.RefinementCtx) => {
    if (b.definitionId === undefined && b.configuration && typeof b.configuration[typeKey] !== 'string')
      ctx.addIssue({
        code: 'custom',
        path: ['configuration', typeKey],
        message: `name the connector: write configuration.${typeKey} (e.g. "postgres") or definitionId`,
      });
  };
}

const atLeastOne = (b: Record<string, unknown>) => Object.values(b).some((v) => v !== undefined);
const NOTHING = 'nothing to change: give at least one field';

export const SourceBody = z
  .object({
    name: Name,
    workspaceId: WorkspaceId,
    definitionId: Id('a source definition id').optional(),
    configuration: Configuration,
    secretId: z.string().min(1).optional(),
  })
  .strict()
  .superRefine(needsType('sourceType'));
export const SourcePatch = z
  .object({
    name: Name.optional(),
    workspaceId: WorkspaceId,
    configuration: Configuration.optional(),
    secretId: z.string().min(1).optional(),
  })
  .strict()
  .refine(atLeastOne, NOTHING);

export const DestinationBody = z
  .object({
    name: Name,
    workspaceId: WorkspaceId,
    definitionId: Id('a destination definition id').optional(),
    configuration: Configuration,
  })
  .strict()
  .superRefine(needsType('destinationType'));
export const DestinationPatch = z
  .object({ name: Name.optional(), workspaceId: WorkspaceId, configuration: Configuration.optional() })
  .strict()
  .refine(atLeastOne, NOTHING);

const Schedule = z
  .object({ scheduleType: z.enum(['manual', 'cron']), cronExpression: z.string().min(1).optional() })
  .strict()
  .refine((s) => s.scheduleType !== 'cron' || s.cronExpression, {
    path: ['cronExpression'],
    message: 'a cron schedule needs cronExpression, e.g. "0 0 * * * ?"',
  });
const Stream = z
  .object({
    name: z.string().min(1),
    namespace: z.string().optional(),
    syncMode: z
      .enum([
        'full_refresh_overwrite',
        'full_refresh_overwrite_deduped',
        'full_refresh_append',
        'full_refresh_update',
        'full_refresh_soft_delete',
        'incremental_append',
        'incremental_deduped_history',
        'incremental_update',
        'incremental_soft_delete',
      ])
      .optional(),
    cursorField: z.array(z.string()).optional(),
    primaryKey: z.array(z.array(z.string())).optional(),
    selectedFields: z.array(z.object({ fieldPath: z.array(z.string()) }).strict()).optional(),
  })
  .strict();
const ConnectionSettings = {
  name: Name,
  workspaceId: WorkspaceId,
  schedule: Schedule.optional(),
  status: z.enum(['active', 'inactive']).optional(),
  configurations: z
    .object({ streams: z.array(Stream) })
    .strict()
    .optional(),
  namespaceDefinition: z.enum(['source', 'destination', 'custom_format']).optional(),
  namespaceFormat: z.string().optional(),
  prefix: z.string().optional(),
  nonBreakingSchemaUpdatesBehavior: z
    .enum(['ignore', 'disable_connection', 'propagate_columns', 'propagate_fully'])
    .optional(),
};

export const ConnectionBody = z
  .object({ ...ConnectionSettings, sourceId: Id('a source id'), destinationId: Id('a destination id') })
  .strict();
export const ConnectionPatch = z
  .object({ ...ConnectionSettings, name: Name.optional() })
  .strict()
  .refine(atLeastOne, NOTHING);

export const IngestionListQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(100, 'at most 100').default(20),
    offset: z.coerce.number().int().min(0).default(0),
    includeDeleted: z
      .enum(['true', 'false'])
      .transform((v) => v === 'true')
      .optional(),
  })
  .strict();

const Tenant = /^[a-z][a-z0-9-]{0,62}$/;
const Uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * STRATA_AIRBYTE_WORKSPACES: `tenant=workspaceUuid,tenant2=uuid2`. One workspace per tenant and
 * one tenant per workspace (two tenants sharing a workspace would see each other's connectors).
 */
export function parseAirbyteWorkspaces(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const owner = new Map<string, string>();
  for (const { pair, key: tenant, value: ws, extra } of envPairs(text)) {
    if (!tenant || !ws || extra.length || !Tenant.test(tenant) || !Uuid.test(ws))
      throw new Error(
        `STRATA_AIRBYTE_WORKSPACES: "${pair}" should be TENANT=WORKSPACE_UUID, e.g. acme=744cc0ed-7f05-4949-9e60-2a814f90c035 (tenant in lower-case letters, digits and "-")`,
      );
    const w = ws.toLowerCase();
    if (out[tenant] !== undefined)
      throw new Error(
        `STRATA_AIRBYTE_WORKSPACES: tenant ${tenant} is mapped twice; a tenant has one Airbyte workspace`,
      );
    if (owner.has(w))
      throw new Error(
        `STRATA_AIRBYTE_WORKSPACES: workspace ${w} is mapped to both ${owner.get(w)} and ${tenant}; give each tenant its own workspace`,
      );
    out[tenant] = w;
    owner.set(w, tenant);
  }
  return out;
}
