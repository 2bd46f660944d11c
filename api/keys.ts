/** /api/v1/keys: API keys of a tenant (admins), any tenant (the bootstrap key). */
import type { FastifyInstance } from 'fastify';
import { KeyBody } from '../schemas/api.js';
import { createKey, listKeys, revokeKey } from '../store/keys.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { RequestError } from '../schemas/errors.js';

export function keyRoutes(app: FastifyInstance, ctx: ApiContext) {
  app.post(
    '/api/v1/keys',
    { schema: { tags: ['keys'], summary: 'Create an API key; the secret is shown only in this response' } },
    async (req, reply) => {
      const p = need(req, 'admin');
      const b = parse(KeyBody, req.body, 'body');
      const tenant = b.tenant ?? p.tenant;
      if (tenant !== p.tenant && !p.superuser)
        throw new RequestError('an admin key creates keys for its own tenant only', 403);
      const k = await createKey(ctx.db, tenant, b.role, b.name);
      return reply.status(201).send({ id: k.id, tenant, role: b.role, key: k.secret });
    },
  );
  app.get<{ Querystring: { tenant?: string } }>(
    '/api/v1/keys',
    { schema: { tags: ['keys'], summary: 'List keys (never their secrets)' } },
    async (req) => {
      const p = need(req, 'admin');
      const tenant = req.query.tenant ?? p.tenant;
      if (tenant !== p.tenant && !p.superuser)
        throw new RequestError('an admin key lists keys of its own tenant only', 403);
      return {
        data: (await listKeys(ctx.db, tenant)).map((k) => ({
          id: k.id,
          role: k.role,
          name: k.name,
          createdAt: k.created_at,
          revokedAt: k.revoked_at,
        })),
      };
    },
  );
  app.delete<{ Params: { id: string }; Querystring: { tenant?: string } }>(
    '/api/v1/keys/:id',
    { schema: { tags: ['keys'], summary: 'Revoke a key' } },
    async (req, reply) => {
      const p = need(req, 'admin');
      const tenant = p.superuser && req.query.tenant ? req.query.tenant : p.tenant;
      if (!(await revokeKey(ctx.db, tenant, req.params.id)))
        throw new RequestError(`no active key ${req.params.id}`, 404);
      ctx.keyLookup.forget(req.params.id);
      return reply.status(204).send();
    },
  );
}
