/** /api/v1/pipelines: register (YAML or JSON), list, read, versions, delete. */
import { channelProblems } from '../activities/notify/channels.js';
import type { FastifyInstance } from 'fastify';
import { parseSpecText } from '../schemas/spec-file.js';
import { notifyRuleSets, validateSpec, type ValidationResult } from '../schemas/pipeline.js';
import { PipelineQuery } from '../schemas/api.js';
import { parse } from './errors.js';
import { fmtBytes, LIMITS, valueProblem } from '../schemas/limits.js';
import { deletePipeline, getPipeline, listPipelines, listVersions, registerPipeline } from '../store/pipelines.js';
import { libraryProblems } from '../store/libraries.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { RequestError } from '../schemas/errors.js';

export async function loadPipeline(ctx: ApiContext, tenant: string, id: string, version?: number) {
  const p = await getPipeline(ctx.db, tenant, id, version);
  if (!p)
    throw new RequestError(
      version
        ? `pipeline ${id} has no version ${version}`
        : `no pipeline ${id}: register it with POST /api/v1/pipelines`,
      404,
    );
  return p;
}

const TOO_DEEP = `the spec nests deeper than the parser follows: at most ${LIMITS.jsonDepth} levels of mappings and lists`;

/**
 * A request body as a validated spec, within the API's limits: YAML text or a JSON object,
 * at most LIMITS.tasksPerSpec tasks and LIMITS.jsonDepth levels, no NUL characters.
 */
export function checkedSpec(body: unknown): ValidationResult {
  const fail = (path: string, message: string): ValidationResult => ({ ok: false, problems: [{ path, message }] });
  const tasks = (n: number) =>
    fail(
      'tasks',
      `${n.toLocaleString('en')} tasks; a pipeline has at most ${LIMITS.tasksPerSpec.toLocaleString('en')}: split it into several pipelines`,
    );
  if (
    body &&
    typeof body === 'object' &&
    Array.isArray((body as { tasks?: unknown }).tasks) &&
    (body as { tasks: unknown[] }).tasks.length > LIMITS.tasksPerSpec
  )
    return tasks((body as { tasks: unknown[] }).tasks.length);
  let r: ValidationResult;
  try {
    r = typeof body === 'string' ? parseSpecText(body) : validateSpec(body);
  } catch (e) {
    if (e instanceof RangeError) return fail('(root)', TOO_DEEP); // the call stack ran out on a deep document
    throw e;
  }
  if (!r.ok) return r.problems.some((x) => /call stack/i.test(x.message)) ? fail('(root)', TOO_DEEP) : r;
  if (r.spec.tasks.length > LIMITS.tasksPerSpec) return tasks(r.spec.tasks.length);
  const problem = valueProblem(r.spec, 'spec');
  return problem ? fail('(root)', problem) : r;
}

export function pipelineRoutes(app: FastifyInstance, ctx: ApiContext) {
  app.post(
    '/api/v1/pipelines',
    {
      schema: {
        tags: ['pipelines'],
        summary: `Register a pipeline spec (YAML or JSON, at most ${fmtBytes(LIMITS.specBytes)} and ${LIMITS.tasksPerSpec.toLocaleString('en')} tasks); the same content again is a no-op`,
      },
    },
    async (req, reply) => {
      const p = need(req, 'admin');
      const r = checkedSpec(req.body);
      if (!r.ok)
        throw new RequestError(
          `the spec has ${r.problems.length} problem(s): ${r.problems.map((x) => `${x.path}: ${x.message}`).join('; ')}`,
          400,
          r.problems,
        );
      // The libraries its tasks pin must be this tenant's (checked again when a job is submitted).
      const libs = await libraryProblems(ctx.db, p.tenant, r.spec);
      if (libs.length)
        throw new RequestError(
          `the spec has ${libs.length} problem(s): ${libs.map((x) => `${x.path}: ${x.message}`).join('; ')}`,
          400,
          libs,
        );
      // The channels its notify rules (its own and its mappings') name must be this tenant's (the worker resolves them again).
      const channels = notifyRuleSets(r.spec, r.mapped).flatMap((s) =>
        channelProblems(ctx.notifyChannels, p.tenant, s.rules, s.at),
      );
      if (channels.length)
        throw new RequestError(
          `the spec has ${channels.length} problem(s): ${channels.map((x) => `${x.path}: ${x.message}`).join('; ')}`,
          400,
          channels,
        );
      const reg = await registerPipeline(ctx.db, p.tenant, r.spec, typeof req.body === 'string' ? req.body : undefined);
      if (reg.created) await ctx.schedules.retarget(p.tenant, r.spec, reg.version);
      return reply.status(reg.created ? 201 : 200).send(reg);
    },
  );

  app.get('/api/v1/pipelines', { schema: { tags: ['pipelines'], summary: 'List pipelines' } }, async (req) => {
    const p = need(req, 'viewer');
    return {
      data: (await listPipelines(ctx.db, p.tenant)).map((r) => ({
        id: r.id,
        version: r.current_version,
        createdAt: r.created_at,
        updatedAt: r.updated_at,
      })),
    };
  });

  app.get<{ Params: { id: string }; Querystring: { version?: string } }>(
    '/api/v1/pipelines/:id',
    { schema: { tags: ['pipelines'], summary: 'A pipeline: its current (or a given) version and spec' } },
    async (req) => {
      const p = need(req, 'viewer');
      const { version: v } = parse(PipelineQuery, req.query, 'query');
      const r = await loadPipeline(ctx, p.tenant, req.params.id, v);
      return {
        id: r.pipeline.id,
        version: r.version,
        currentVersion: r.pipeline.current_version,
        contentHash: r.contentHash,
        spec: r.spec,
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/api/v1/pipelines/:id/versions',
    { schema: { tags: ['pipelines'], summary: 'Every version of a pipeline' } },
    async (req) => {
      const p = need(req, 'viewer');
      await loadPipeline(ctx, p.tenant, req.params.id);
      return {
        data: (await listVersions(ctx.db, p.tenant, req.params.id)).map((v) => ({
          version: v.version,
          contentHash: v.content_hash,
          createdAt: v.created_at,
        })),
      };
    },
  );

  app.delete<{ Params: { id: string }; Querystring: { force?: string } }>(
    '/api/v1/pipelines/:id',
    {
      schema: {
        tags: ['pipelines'],
        summary: 'Delete a pipeline (refused while it has schedules, unless ?force=true)',
      },
    },
    async (req, reply) => {
      const p = need(req, 'admin');
      await loadPipeline(ctx, p.tenant, req.params.id);
      const schedules = await ctx.schedules.list(p.tenant, req.params.id);
      const force = req.query.force === 'true' || req.query.force === '';
      if (schedules.length && !force)
        throw new RequestError(
          `pipeline ${req.params.id} has ${schedules.length} schedule(s) (${schedules.map((s) => s.id).join(', ')}): delete them first or pass ?force=true`,
          409,
        );
      for (const s of schedules) await ctx.schedules.remove(p.tenant, req.params.id, s.id);
      await deletePipeline(ctx.db, p.tenant, req.params.id);
      return reply.status(204).send();
    },
  );
}
