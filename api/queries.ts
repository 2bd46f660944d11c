/**
 * /api/v1/queries: read-only SQL that answers with rows (api/queries-service.ts).
 * JSON by default; `Accept: text/csv` answers a finished statement's first chunk (and
 * GET …/result/chunks/{n} any chunk) as CSV, the header row in chunk 0 only;
 * `Accept: application/vnd.apache.arrow.stream` as an Arrow IPC stream (api/arrow.ts), each
 * chunk a stream with its schema.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { QueryBody } from '../schemas/api.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { ARROW_STREAM, arrowOf } from './arrow.js';
import { csvOf, statementView, type Statement } from './queries-service.js';
import { RequestError } from '../schemas/errors.js';

const wantsCsv = (req: FastifyRequest) => /\btext\/csv\b/i.test(String(req.headers.accept ?? ''));
const wantsArrow = (req: FastifyRequest) =>
  String(req.headers.accept ?? '')
    .toLowerCase()
    .includes(ARROW_STREAM);

function answer(req: FastifyRequest, reply: FastifyReply, st: Statement, fresh: boolean) {
  if (st.status === 'running') return reply.status(fresh ? 202 : 200).send(statementView(st));
  if (wantsArrow(req) && st.status === 'succeeded')
    return reply
      .type(ARROW_STREAM)
      .header('x-strata-statement-id', st.id)
      .header('x-strata-chunk-count', String(st.chunks!.length))
      .send(Buffer.from(arrowOf(st.columns!, st.chunks![0])));
  if (wantsCsv(req) && st.status === 'succeeded')
    return reply
      .type('text/csv; charset=utf-8')
      .header('x-strata-statement-id', st.id)
      .header('x-strata-chunk-count', String(st.chunks!.length))
      .send(csvOf(st.columns!, st.chunks![0], true));
  return reply.status(200).send(statementView(st));
}

export function queryRoutes(app: FastifyInstance, ctx: ApiContext) {
  const tags = ['queries'];
  app.post(
    '/api/v1/queries',
    {
      schema: { tags, summary: 'Run one read-only statement: rows within `wait` seconds, else a statement id to poll' },
    },
    async (req, reply) => {
      const p = need(req, 'viewer');
      const body = parse(QueryBody, req.body, 'body');
      const key = req.headers['idempotency-key'];
      if (Array.isArray(key)) throw new RequestError('Idempotency-Key is given more than once: give it once', 400);
      const st = await ctx.queries.submit(p, body, key);
      return answer(req, reply, st, true);
    },
  );
  app.get<{ Params: { id: string } }>(
    '/api/v1/queries/:id',
    { schema: { tags, summary: 'A statement: its status, and when it succeeded the manifest and first chunk' } },
    async (req, reply) => {
      const p = need(req, 'viewer');
      return answer(req, reply, ctx.queries.get(p, req.params.id), false);
    },
  );
  app.post<{ Params: { id: string } }>(
    '/api/v1/queries/:id/cancel',
    { schema: { tags, summary: 'Cancel a running statement' } },
    async (req, reply) => {
      const p = need(req, 'viewer');
      return reply.send(statementView(await ctx.queries.cancel(p, req.params.id)));
    },
  );
  app.get<{ Params: { id: string; n: string } }>(
    '/api/v1/queries/:id/result/chunks/:n',
    { schema: { tags, summary: 'One chunk of a result (chunks may be fetched in parallel)' } },
    async (req, reply) => {
      const p = need(req, 'viewer');
      if (!/^\d{1,9}$/.test(req.params.n))
        throw new RequestError(`chunk index must be a whole number (got "${req.params.n.slice(0, 20)}")`, 400);
      const n = Number(req.params.n);
      const c = ctx.queries.chunk(p, req.params.id, n);
      if (wantsArrow(req))
        return reply.type(ARROW_STREAM).send(Buffer.from(arrowOf(ctx.queries.get(p, req.params.id).columns!, c.data)));
      if (wantsCsv(req))
        return reply
          .type('text/csv; charset=utf-8')
          .send(csvOf(ctx.queries.get(p, req.params.id).columns!, c.data, n === 0));
      return reply.send(c);
    },
  );
}
