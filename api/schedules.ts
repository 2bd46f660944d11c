/** /api/v1/pipelines/{id}/schedules: Temporal Schedules for a pipeline. */
import type { FastifyInstance } from 'fastify';
import { BackfillBody, ScheduleBody, SchedulePatch } from '../schemas/api.js';
import { channelProblems } from '../activities/notify/channels.js';
import { listScheduleDeliveries } from '../store/notifications.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { loadPipeline } from './pipelines.js';
import { RequestError } from '../schemas/errors.js';

type P = { Params: { id: string; sid: string } };

/** The channels a schedule's rules name must be the tenant's own: a 400 listing them otherwise. */
function checkChannels(ctx: ApiContext, tenant: string, rules: { channel: string }[] | undefined) {
  const problems = channelProblems(ctx.notifyChannels, tenant, rules);
  if (problems.length) throw new RequestError(problems.map((x) => `${x.path}: ${x.message}`).join('; '), 400, problems);
}

export function scheduleRoutes(app: FastifyInstance, ctx: ApiContext) {
  const base = '/api/v1/pipelines/:id/schedules';
  const tags = ['schedules'];
  app.post<{ Params: { id: string } }>(
    base,
    { schema: { tags, summary: 'Create a cron schedule (Temporal Schedule) for the pipeline' } },
    async (req, reply) => {
      const p = need(req, 'admin');
      const body = parse(ScheduleBody, req.body, 'body');
      checkChannels(ctx, p.tenant, body.notify);
      const pipe = await loadPipeline(ctx, p.tenant, req.params.id);
      return reply.status(201).send(await ctx.schedules.create(p.tenant, pipe.spec, pipe.version, body));
    },
  );
  app.get<{ Params: { id: string } }>(
    base,
    { schema: { tags, summary: 'List the pipeline’s schedules' } },
    async (req) => {
      const p = need(req, 'viewer');
      await loadPipeline(ctx, p.tenant, req.params.id);
      return { data: await ctx.schedules.list(p.tenant, req.params.id) };
    },
  );
  app.get<P & { Querystring: { next?: string } }>(
    `${base}/:sid`,
    { schema: { tags, summary: 'A schedule, with a preview of its next fire times (?next=N)' } },
    async (req) => {
      const p = need(req, 'viewer');
      const n = req.query.next === undefined ? 5 : Number(req.query.next);
      if (!Number.isInteger(n) || n < 1 || n > 100)
        throw new RequestError('next must be a whole number from 1 to 100', 400);
      return ctx.schedules.get(p.tenant, req.params.id, req.params.sid, n);
    },
  );
  app.patch<P>(`${base}/:sid`, { schema: { tags, summary: 'Change a schedule' } }, async (req) => {
    const p = need(req, 'admin');
    const patch = parse(SchedulePatch, req.body, 'body');
    checkChannels(ctx, p.tenant, patch.notify);
    const pipe = await loadPipeline(ctx, p.tenant, req.params.id);
    return ctx.schedules.update(p.tenant, pipe.spec, pipe.version, req.params.sid, patch);
  });
  app.get<P>(
    `${base}/:sid/notifications`,
    {
      schema: {
        tags,
        summary: 'The schedule_missed notifications of a schedule, newest first, with their outcome',
      },
    },
    async (req) => {
      const p = need(req, 'viewer');
      const r = await ctx.schedules.row(p.tenant, req.params.id, req.params.sid);
      return { data: await listScheduleDeliveries(ctx.db, p.tenant, r.temporal_id) };
    },
  );
  app.delete<P>(`${base}/:sid`, { schema: { tags, summary: 'Delete a schedule' } }, async (req, reply) => {
    const p = need(req, 'admin');
    await ctx.schedules.remove(p.tenant, req.params.id, req.params.sid);
    return reply.status(204).send();
  });
  for (const action of ['pause', 'unpause'] as const)
    app.post<P>(
      `${base}/:sid/${action}`,
      { schema: { tags, summary: `${action[0].toUpperCase()}${action.slice(1)} a schedule` } },
      async (req) => {
        const p = need(req, 'operator');
        await ctx.schedules.setPaused(p.tenant, req.params.id, req.params.sid, action === 'pause');
        return ctx.schedules.get(p.tenant, req.params.id, req.params.sid);
      },
    );
  app.post<P>(
    `${base}/:sid/trigger`,
    { schema: { tags, summary: 'Run the schedule’s action now' } },
    async (req, reply) => {
      const p = need(req, 'operator');
      await ctx.schedules.trigger(p.tenant, req.params.id, req.params.sid);
      return reply.status(202).send({ triggered: true });
    },
  );
  app.post<P>(
    `${base}/:sid/backfill`,
    {
      schema: {
        tags,
        summary: 'One run per interval the cron would have fired in [from, to), each with its logical date',
      },
    },
    async (req, reply) => {
      const p = need(req, 'operator');
      const b = parse(BackfillBody, req.body, 'body');
      return reply
        .status(202)
        .send(await ctx.schedules.backfill(p.tenant, req.params.id, req.params.sid, b.from, b.to, b.overlap));
    },
  );
}
