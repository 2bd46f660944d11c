/**
 * /iceberg/v1/…: the Iceberg REST Catalog API (the spec's paths under the catalog URI
 * `{api}/iceberg`). The caller's Strata bearer key gives the tenant and role; the prefix
 * (and the `warehouse` of /v1/config) is the tenant's own warehouse, any other is a 404.
 * Errors answer in the spec's shape, `{"error": {"message", "type", "code"}}`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { S3Config } from '../activities/s3/client.js';
import type { Db } from '../store/db.js';
import { IcebergStore, NS_SEP } from '../store/iceberg.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { checkName, IcebergError, IcebergService } from './iceberg-service.js';
import { RequestError } from '../schemas/errors.js';
import { parseJson, stringifyJson } from '../schemas/json64.js';
import { valueProblem } from '../schemas/limits.js';
import { parseIcebergVending } from '../schemas/config.js';

type Params = { prefix: string; namespace: string; table: string };
type Req = FastifyRequest<{
  Params: Params;
  Querystring: Record<string, string | undefined>;
  Body: Record<string, unknown>;
}>;

const UUIDISH = /^[0-9A-Fa-f-]{36}$/;

export function icebergRoutes(app: FastifyInstance, ctx: ApiContext, s3?: S3Config) {
  const vending = parseIcebergVending(ctx.config.STRATA_ICEBERG_VENDING);
  const tags = ['iceberg'];
  const svc = () => {
    if (!ctx.lake)
      throw new IcebergError(
        503,
        'ServiceUnavailableException',
        'this API has no lake configured: start it with a metastore and STRATA_LAKE_ROOT',
      );
    return new IcebergService({ lake: ctx.lake, s3, vending });
  };
  /** `run`: a run's catalog credential may use the route (loads, create and commit of its outputs). */
  const tenantOf = (req: Req, role: 'viewer' | 'operator', run = false) => {
    const p = need(req, role, { run });
    if (req.params.prefix !== undefined && req.params.prefix !== p.tenant)
      throw new IcebergError(
        404,
        'NoSuchWarehouseException',
        `no warehouse ${req.params.prefix}: yours is ${p.tenant}`,
      );
    return p.tenant;
  };
  const ns = (req: Req) => req.params.namespace.split(NS_SEP).map((n) => checkName('namespace level', n));
  const table = (req: Req) => checkName('table name', req.params.table);

  /**
   * A mutation: with an Idempotency-Key, the first final answer (2xx, 4xx) is stored and
   * replayed for every retry; `inTx` lets a commit store it in its own transaction.
   */
  const mutate = async (
    req: Req,
    reply: FastifyReply,
    status: number,
    run: (tenant: string, remember?: (db: Db, result: unknown) => Promise<void>) => Promise<unknown>,
    allowRun = false,
  ) => {
    const tenant = tenantOf(req, 'operator', allowRun);
    const key = req.headers['idempotency-key'];
    if (key === undefined) return send(reply, status, await run(tenant));
    if (typeof key !== 'string' || !UUIDISH.test(key))
      throw new IcebergError(400, 'BadRequestException', 'Idempotency-Key must be a UUID (36 characters)');
    const route = `${req.method} ${req.routeOptions.url}`;
    const store = new IcebergStore(ctx.lake!.catalog.db);
    const seen = await store.idempotent(tenant, key);
    if (seen) return send(reply, seen.status, seen.response ?? undefined);
    let stored = false;
    try {
      const result = await run(tenant, async (db, r) => {
        stored = true;
        await new IcebergStore(db).rememberIdempotent(tenant, key, route, status, r);
      });
      if (!stored) await store.rememberIdempotent(tenant, key, route, status, result);
      return send(reply, status, result);
    } catch (e) {
      if (e instanceof IcebergError && e.code < 500)
        await store.rememberIdempotent(tenant, key, route, e.code, e.body());
      throw e;
    }
  };

  app.register(async (sub) => {
    // Iceberg JSON carries 64-bit ids: parse and answer them exactly (activities/iceberg/json.ts).
    sub.removeContentTypeParser('application/json');
    sub.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, raw, done) => {
      const text = String(raw);
      if (text.trim() === '') return done(null, {});
      if (/\\u0000/i.test(text) || text.includes('\0'))
        return done(
          new IcebergError(400, 'BadRequestException', 'the body holds a NUL character: remove it'),
          undefined,
        );
      let value: unknown;
      try {
        value = parseJson(text);
      } catch (e) {
        return done(
          new IcebergError(
            400,
            'BadRequestException',
            `the body is not valid JSON: ${(e as Error).message.slice(0, 200)}`,
          ),
          undefined,
        );
      }
      if (!value || typeof value !== 'object' || Array.isArray(value))
        return done(new IcebergError(400, 'BadRequestException', 'the JSON body must be an object'), undefined);
      const problem = valueProblem(value);
      done(problem ? new IcebergError(400, 'BadRequestException', problem) : null, problem ? undefined : value);
    });
    sub.setReplySerializer((payload) => stringifyJson(payload));
    sub.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
      const status = err.statusCode;
      const e =
        err instanceof IcebergError
          ? err
          : err instanceof RequestError
            ? new IcebergError(
                err.status,
                err.status === 401
                  ? 'NotAuthorizedException'
                  : err.status === 403
                    ? 'ForbiddenException'
                    : 'BadRequestException',
                err.message,
              )
            : status && status < 500
              ? new IcebergError(status, 'BadRequestException', err.message)
              : undefined;
      if (e) return reply.header('x-request-id', req.id).status(e.code).send(e.body());
      req.log.error(err);
      return reply
        .header('x-request-id', req.id)
        .status(500)
        .send(
          new IcebergError(
            500,
            'InternalServerError',
            `internal error: the API logged it under request id ${req.id}`,
          ).body(),
        );
    });

    sub.get(
      '/iceberg/v1/config',
      { schema: { tags, summary: 'Catalog configuration (the warehouse is your tenant)' } },
      async (req: Req) => svc().config(tenantOf(req, 'viewer', true), req.query.warehouse),
    );
    const base = '/iceberg/v1/:prefix/namespaces';
    sub.get(base, { schema: { tags, summary: 'List namespaces (?parent=)' } }, async (req: Req) =>
      svc().listNamespaces(tenantOf(req, 'viewer', true), req.query.parent ? req.query.parent.split(NS_SEP) : []),
    );
    sub.post(base, { schema: { tags, summary: 'Create a namespace' } }, async (req: Req, reply) =>
      mutate(req, reply, 200, (t) => svc().createNamespace(t, req.body ?? {})),
    );
    sub.get(
      `${base}/:namespace`,
      { exposeHeadRoute: false, schema: { tags, summary: 'A namespace and its properties' } },
      async (req: Req) => svc().getNamespace(tenantOf(req, 'viewer', true), ns(req)),
    );
    sub.head(
      `${base}/:namespace`,
      { schema: { tags, summary: 'Whether a namespace exists' } },
      async (req: Req, reply) => {
        await svc().getNamespace(tenantOf(req, 'viewer', true), ns(req));
        return reply.status(204).send();
      },
    );
    sub.delete(
      `${base}/:namespace`,
      { schema: { tags, summary: 'Drop an empty namespace' } },
      async (req: Req, reply) => mutate(req, reply, 204, (t) => svc().dropNamespace(t, ns(req))),
    );
    sub.post(
      `${base}/:namespace/properties`,
      { schema: { tags, summary: 'Set and remove namespace properties' } },
      async (req: Req, reply) =>
        mutate(req, reply, 200, (t) => svc().updateNamespaceProperties(t, ns(req), req.body ?? {})),
    );
    sub.get(`${base}/:namespace/tables`, { schema: { tags, summary: 'List tables' } }, async (req: Req) =>
      svc().listTables(tenantOf(req, 'viewer', true), ns(req)),
    );
    sub.post(`${base}/:namespace/tables`, { schema: { tags, summary: 'Create a table' } }, async (req: Req, reply) =>
      mutate(req, reply, 200, (t) => svc().createTable(t, ns(req), req.body ?? {}, req.principal?.run), true),
    );
    sub.post(
      `${base}/:namespace/register`,
      { schema: { tags, summary: 'Register a table from a metadata file in your warehouse' } },
      async (req: Req, reply) => mutate(req, reply, 200, (t) => svc().registerTable(t, ns(req), req.body ?? {})),
    );
    sub.get(
      `${base}/:namespace/tables/:table`,
      { exposeHeadRoute: false, schema: { tags, summary: 'Load a table' } },
      async (req: Req) =>
        svc().loadTable(
          tenantOf(req, 'viewer', true),
          ns(req),
          table(req),
          req.headers['x-iceberg-access-delegation'] as string | undefined,
          req.principal?.run,
        ),
    );
    sub.head(
      `${base}/:namespace/tables/:table`,
      { schema: { tags, summary: 'Whether a table exists' } },
      async (req: Req, reply) => {
        await svc().tableExists(tenantOf(req, 'viewer', true), ns(req), table(req));
        return reply.status(204).send();
      },
    );
    sub.post(
      `${base}/:namespace/tables/:table`,
      { schema: { tags, summary: 'Commit requirements and updates to a table (409 when a requirement fails)' } },
      async (req: Req, reply) =>
        mutate(
          req,
          reply,
          200,
          (t, remember) => svc().commitTable(t, ns(req), table(req), req.body ?? {}, remember, req.principal?.run),
          true,
        ),
    );
    sub.delete(
      `${base}/:namespace/tables/:table`,
      { schema: { tags, summary: 'Drop a table (?purgeRequested=true deletes its files)' } },
      async (req: Req, reply) =>
        mutate(req, reply, 204, (t) => svc().dropTable(t, ns(req), table(req), req.query.purgeRequested === 'true')),
    );
    sub.post(
      '/iceberg/v1/:prefix/tables/rename',
      { schema: { tags, summary: 'Rename a table' } },
      async (req: Req, reply) => mutate(req, reply, 204, (t) => svc().renameTable(t, req.body ?? {})),
    );
  });
}

function send(reply: FastifyReply, status: number, body: unknown) {
  return status === 204 ? reply.status(204).send() : reply.status(status).send(body);
}
