/**
 * /api/v1/clusters: the caller's tenant's managed clusters, one `clusterLifecycle`
 * entity workflow each. The tenant always comes from the API key, never from the body.
 */
import type { FastifyInstance } from 'fastify';
import { ClusterBody, ClusterResizeBody } from '../schemas/api.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { RequestError } from '../schemas/errors.js';

export function clusterRoutes(app: FastifyInstance, ctx: ApiContext) {
  const tags = ['clusters'];
  type Named = { Params: { name: string } };

  app.post(
    '/api/v1/clusters',
    {
      schema: {
        tags,
        summary: 'Create a cluster (202): it provisions, then lives until idle, deleted or at its maximum lifetime',
      },
    },
    async (req, reply) => {
      const p = need(req, 'operator');
      const b = parse(ClusterBody, req.body, 'body');
      if (b.tenant !== undefined && b.tenant !== p.tenant)
        throw new RequestError(
          `body.tenant: your key belongs to tenant ${p.tenant}; leave tenant out or write ${p.tenant}`,
          403,
        );
      const { workflowId } = await ctx.clusters.create({ ...b, tenant: p.tenant });
      return reply
        .status(202)
        .send({ name: b.name, workflowId, state: await ctx.clusters.get(p.tenant, b.name).catch(() => undefined) });
    },
  );

  app.get(
    '/api/v1/clusters',
    { schema: { tags, summary: "The tenant's clusters, running and ended, with live state for running ones" } },
    async (req) => {
      const p = need(req, 'viewer');
      return { clusters: await ctx.clusters.list(p.tenant), tier: ctx.clusters.tierOf(p.tenant) };
    },
  );

  app.get<Named>(
    '/api/v1/clusters/:name',
    { schema: { tags, summary: 'One cluster: phase, size, endpoint, last use' } },
    async (req) => {
      const p = need(req, 'viewer');
      return ctx.clusters.get(p.tenant, req.params.name);
    },
  );

  app.delete<Named>(
    '/api/v1/clusters/:name',
    { schema: { tags, summary: 'Terminate a running cluster (202)' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      await ctx.clusters.delete(p.tenant, req.params.name, `deleted through the API by key ${p.keyId}`);
      return reply.status(202).send({ name: req.params.name, terminateRequested: true });
    },
  );

  // Record use of the cluster: resets its idle timer (`/touch` is the same, kept as an alias).
  for (const route of ['/api/v1/clusters/:name/activity', '/api/v1/clusters/:name/touch'])
    app.post<Named>(
      route,
      {
        schema: { tags, summary: 'Record use of the cluster (resets its idle timer)', hide: route.endsWith('/touch') },
      },
      async (req, reply) => {
        const p = need(req, 'operator');
        await ctx.clusters.touch(p.tenant, req.params.name, `api:${p.keyId}`);
        return reply.status(202).send({ name: req.params.name, touched: true });
      },
    );

  app.post<Named>(
    '/api/v1/clusters/:name/resize',
    { schema: { tags, summary: 'Resize a ready cluster within the tenant tier; answers with the new state' } },
    async (req) => {
      const p = need(req, 'operator');
      const b = parse(ClusterResizeBody, req.body, 'body');
      const current = await ctx.clusters.get(p.tenant, req.params.name);
      return ctx.clusters.resize(p.tenant, req.params.name, { ...current.size, ...b });
    },
  );
}
