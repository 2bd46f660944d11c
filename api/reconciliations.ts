/** /api/v1/reconciliations: exact dataset comparisons as durable workflows. */
import type { FastifyInstance } from 'fastify';
import { ReconciliationBody, ReconciliationsQuery } from '../schemas/api.js';
import { listReconciliations } from '../store/reconciliations.js';
import { missingId, need, ownId, owns } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';

export function reconciliationRoutes(app: FastifyInstance, ctx: ApiContext) {
  const tags = ['reconciliations'];
  app.post(
    '/api/v1/reconciliations',
    { schema: { tags, summary: 'Compare two datasets (202); poll GET for progress and the result' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      const b = parse(ReconciliationBody, req.body, 'body');
      return reply.status(202).send(await ctx.reconciliations.start(p.tenant, b));
    },
  );
  app.get<{ Querystring: Record<string, string> }>(
    '/api/v1/reconciliations',
    {
      schema: {
        tags,
        summary:
          'Results over time, newest first: ?mapping= (a pipeline’s named reconciliation), ?pipeline=, ?limit= (1–200, default 50)',
      },
    },
    async (req) => {
      const p = need(req, 'viewer');
      const q = parse(ReconciliationsQuery, req.query, 'query');
      return { reconciliations: await listReconciliations(ctx.db, p.tenant, q) };
    },
  );
  app.get<{ Params: { id: string } }>(
    '/api/v1/reconciliations/:id',
    { schema: { tags, summary: 'Status, progress (rows, bytes, phase) and, when done, the exact result' } },
    async (req) => {
      const p = need(req, 'viewer');
      ownId(p, req.params.id, 'reconcile');
      return ctx.reconciliations.get(req.params.id, (tenant) => owns(p, tenant, missingId('reconcile', req.params.id)));
    },
  );
  app.post<{ Params: { id: string } }>(
    '/api/v1/reconciliations/:id/cancel',
    { schema: { tags, summary: 'Cancel a running comparison' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      ownId(p, req.params.id, 'reconcile');
      await ctx.reconciliations.cancel(req.params.id, (tenant) =>
        owns(p, tenant, missingId('reconcile', req.params.id)),
      );
      return reply.status(202).send({ id: req.params.id, cancelRequested: true });
    },
  );
}
