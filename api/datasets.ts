/** /api/v1/datasets: the lake catalog (schema, versions, checks, lineage, preview). */
import type { FastifyInstance } from 'fastify';
import { DatasetsService } from '../client/datasets.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { RequestError } from '../schemas/errors.js';

export function datasetRoutes(app: FastifyInstance, ctx: ApiContext) {
  const tags = ['datasets'];
  const svc = () => {
    if (!ctx.lake)
      throw new RequestError(
        'this API has no lake configured: start it with a metastore (DATABASE_URL) and STRATA_LAKE_ROOT',
        503,
      );
    return new DatasetsService(ctx.lake);
  };
  const int = (v: string | undefined, name: string, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new RequestError(`${name} must be a whole number`, 400);
    return n;
  };
  app.get<{ Querystring: { layer?: string; namespace?: string } }>(
    '/api/v1/datasets',
    { schema: { tags, summary: 'List datasets (current versions)' } },
    async (req) => {
      const p = need(req, 'viewer');
      return { data: await svc().list(p.tenant, { layer: req.query.layer, namespace: req.query.namespace }) };
    },
  );
  app.get<{ Params: { ref: string } }>(
    '/api/v1/datasets/:ref',
    { schema: { tags, summary: 'A dataset (layer.name): schema, versions, checks' } },
    async (req) => {
      const p = need(req, 'viewer');
      return svc().get(p.tenant, req.params.ref);
    },
  );
  app.get<{ Params: { ref: string } }>(
    '/api/v1/datasets/:ref/versions',
    { schema: { tags, summary: 'Every version of a dataset' } },
    async (req) => {
      const p = need(req, 'viewer');
      return { data: await svc().versions(p.tenant, req.params.ref) };
    },
  );
  app.get<{ Params: { ref: string }; Querystring: { depth?: string } }>(
    '/api/v1/datasets/:ref/lineage',
    { schema: { tags, summary: 'Upstream and downstream datasets, to ?depth=' } },
    async (req) => {
      const p = need(req, 'viewer');
      return svc().lineage(p.tenant, req.params.ref, int(req.query.depth, 'depth', 3));
    },
  );
  app.get<{ Params: { ref: string }; Querystring: { limit?: string } }>(
    '/api/v1/datasets/:ref/preview',
    { schema: { tags, summary: 'The first rows (name, name@version or name@time)' } },
    async (req) => {
      const p = need(req, 'viewer');
      return svc().preview(p.tenant, req.params.ref, int(req.query.limit, 'limit', 20));
    },
  );
}
