/**
 * /api/v1/ingestion/{sources|destinations|connections}: the caller's Airbyte connectors and
 * connections. Each tenant maps to one Airbyte workspace (STRATA_AIRBYTE_WORKSPACES); the
 * workspace always comes from that mapping, never from the body, lists are filtered by it and
 * another workspace's resource answers 404 as if it did not exist. Connector configurations
 * may hold passwords: they are never logged nor quoted in an error.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { AirbyteError, INGESTION_KINDS, type AirbyteClient, type IngestionKind } from '../activities/airbyte/client.js';
import {
  ConnectionBody,
  ConnectionPatch,
  DestinationBody,
  DestinationPatch,
  IngestionListQuery,
  SourceBody,
  SourcePatch,
} from '../schemas/ingestion.js';
import type { Role } from '../store/keys.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { RequestError } from '../schemas/errors.js';

export const INGESTION_BODIES: Record<
  IngestionKind,
  { one: string; idKey: string; create: z.ZodType; patch: z.ZodType }
> = {
  sources: { one: 'source', idKey: 'sourceId', create: SourceBody, patch: SourcePatch },
  destinations: { one: 'destination', idKey: 'destinationId', create: DestinationBody, patch: DestinationPatch },
  connections: { one: 'connection', idKey: 'connectionId', create: ConnectionBody, patch: ConnectionPatch },
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every string in a connector configuration (at least 4 characters), to keep out of messages. */
function secretsOf(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string' && v.length >= 4) out.push(v);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) secretsOf(x, out);
  return out;
}

export function redact(text: string, configuration: unknown): string {
  let t = text;
  for (const s of secretsOf(configuration).sort((a, b) => b.length - a.length)) t = t.split(s).join('***');
  return t;
}

/** An Airbyte failure as the answer the caller can act on. */
function translate(e: unknown, configuration: unknown, notFound?: string): never {
  if (!(e instanceof AirbyteError)) throw e;
  if (e.status === 404 && notFound) throw new RequestError(notFound, 404);
  const detail = redact(e.detail ?? e.message, configuration);
  if ([400, 404, 409, 422].includes(e.status))
    throw new RequestError(`Airbyte refused the request: ${detail}`, e.status);
  if (e.status === 429) throw new RequestError('Airbyte is rate-limiting Strata; retry in a little while', 503);
  if (e.status === 401 || e.status === 403)
    throw new RequestError(
      `Airbyte refused Strata's credentials (${e.status}): check AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET of the API`,
      502,
    );
  throw new RequestError(`Airbyte is unavailable (${e.status ? `status ${e.status}` : 'no answer'}): ${detail}`, 502);
}

export function ingestionRoutes(app: FastifyInstance, ctx: ApiContext) {
  const tags = ['ingestion'];

  /** The caller, the Airbyte client and the tenant's workspace, or the status saying what is missing. */
  function scope(req: FastifyRequest, role: Role): { tenant: string; ab: AirbyteClient; ws: string } {
    const p = need(req, role);
    if (!ctx.airbyte)
      throw new RequestError(
        "Airbyte is not configured for this API: set AIRBYTE_URL, AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET (and STRATA_AIRBYTE_WORKSPACES) in the API's environment",
        503,
      );
    const ws = Object.hasOwn(ctx.airbyteWorkspaces, p.tenant) ? ctx.airbyteWorkspaces[p.tenant] : undefined;
    if (!ws)
      throw new RequestError(
        `tenant ${p.tenant} has no Airbyte workspace: add ${p.tenant}=<workspace uuid> to STRATA_AIRBYTE_WORKSPACES in the API's environment`,
        409,
      );
    return { tenant: p.tenant, ab: ctx.airbyte, ws };
  }

  /** The body may name the tenant's workspace (any case) or leave it out; another is refused. */
  function sameWorkspace(given: string | undefined, ws: string, tenant: string) {
    if (given !== undefined && given.toLowerCase() !== ws)
      throw new RequestError(
        `body.workspaceId: tenant ${tenant} works in Airbyte workspace ${ws}; leave workspaceId out or write ${ws}`,
        403,
      );
  }

  /** The resource, if it exists in the tenant's workspace; otherwise 404 (not revealing another's). */
  async function owned(
    s: { tenant: string; ab: AirbyteClient; ws: string },
    kind: IngestionKind,
    id: string,
    where = 'id',
  ) {
    const { one } = INGESTION_BODIES[kind];
    const missing = `${where === 'id' ? '' : `${where}: `}no ${one} ${id} in the Airbyte workspace of tenant ${s.tenant}`;
    if (!UUID.test(id)) throw new RequestError(`${where}: an Airbyte ${one} id is a UUID`, where === 'id' ? 404 : 400);
    const r = await s.ab.getResource(kind, id).catch((e) => translate(e, undefined, missing));
    if (String(r.workspaceId).toLowerCase() !== s.ws) throw new RequestError(missing, 404);
    return r;
  }

  for (const kind of INGESTION_KINDS) {
    const { one, create, patch } = INGESTION_BODIES[kind];
    const base = `/api/v1/ingestion/${kind}`;
    type ById = { Params: { id: string } };

    app.get(
      base,
      { schema: { tags, summary: `The ${kind} of the tenant's Airbyte workspace (limit, offset, includeDeleted)` } },
      async (req) => {
        const s = scope(req, 'viewer');
        const q = parse(IngestionListQuery, req.query, 'query');
        const page = await s.ab
          .listResources(kind, {
            workspaceIds: [s.ws],
            limit: q.limit,
            offset: q.offset,
            includeDeleted: q.includeDeleted,
          })
          .catch((e) => translate(e, undefined));
        const link = (offset: number) =>
          `${base}?limit=${q.limit}&offset=${offset}${q.includeDeleted ? '&includeDeleted=true' : ''}`;
        return {
          data: page.data.filter((r) => String(r.workspaceId).toLowerCase() === s.ws),
          ...(page.next ? { next: link(q.offset + q.limit) } : {}),
          ...(q.offset > 0 ? { previous: link(Math.max(0, q.offset - q.limit)) } : {}),
        };
      },
    );

    app.post(
      base,
      { schema: { tags, summary: `Create a ${one} in the tenant's Airbyte workspace (201)` } },
      async (req, reply) => {
        const s = scope(req, 'operator');
        const b = parse(create, req.body, 'body') as Record<string, unknown> & {
          workspaceId?: string;
          configuration?: unknown;
        };
        sameWorkspace(b.workspaceId, s.ws, s.tenant);
        let body: Record<string, unknown>;
        if (kind === 'connections') {
          const { workspaceId: _, ...rest } = b;
          await owned(s, 'sources', String(b.sourceId), 'body.sourceId');
          await owned(s, 'destinations', String(b.destinationId), 'body.destinationId');
          body = rest;
        } else body = { ...b, workspaceId: s.ws };
        const made = await s.ab.createResource(kind, body as never).catch((e) => translate(e, b.configuration));
        return reply.status(201).send(made);
      },
    );

    app.get<ById>(
      `${base}/:id`,
      { schema: { tags, summary: `One ${one} (secrets masked by Airbyte)` } },
      async (req) => {
        const s = scope(req, 'viewer');
        return owned(s, kind, req.params.id);
      },
    );

    app.patch<ById>(
      `${base}/:id`,
      { schema: { tags, summary: `Change a ${one}: only the fields given` } },
      async (req) => {
        const s = scope(req, 'operator');
        const b = parse(patch, req.body, 'body') as Record<string, unknown> & {
          workspaceId?: string;
          configuration?: unknown;
        };
        sameWorkspace(b.workspaceId, s.ws, s.tenant);
        await owned(s, kind, req.params.id);
        const { workspaceId: _, ...rest } = b;
        return s.ab
          .patchResource(kind, req.params.id, rest as never)
          .catch((e) =>
            translate(e, b.configuration, `no ${one} ${req.params.id} in the Airbyte workspace of tenant ${s.tenant}`),
          );
      },
    );

    app.delete<ById>(
      `${base}/:id`,
      {
        schema: {
          tags,
          summary: `Delete a ${one} (204)${kind === 'connections' ? '' : '; Airbyte also deletes its connections'}`,
        },
      },
      async (req, reply) => {
        const s = scope(req, 'operator');
        await owned(s, kind, req.params.id);
        await s.ab
          .deleteResource(kind, req.params.id)
          .catch((e) =>
            translate(e, undefined, `no ${one} ${req.params.id} in the Airbyte workspace of tenant ${s.tenant}`),
          );
        return reply.status(204).send();
      },
    );
  }
}
