/** Bearer-key authentication, roles and tenant scoping. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Db } from '../store/db.js';
import { cachedKeyLookup, type Principal, type Role } from '../store/keys.js';
import { RequestError } from './runs-service.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function authenticator(db: Db, bootstrap?: { key: string; tenant: string }, lookup = cachedKeyLookup(db)) {
  const bootHash = bootstrap ? createHash('sha256').update(bootstrap.key).digest() : undefined;
  return async (req: FastifyRequest, _reply: FastifyReply) => {
    const h = req.headers.authorization;
    if (!h?.startsWith('Bearer ')) throw new RequestError('send "Authorization: Bearer <api key>"', 401);
    const secret = h.slice(7).trim();
    if (bootHash && bootstrap && timingSafeEqual(createHash('sha256').update(secret).digest(), bootHash)) {
      req.principal = { tenant: bootstrap.tenant, role: 'admin', keyId: 'bootstrap', superuser: true };
      return;
    }
    const p = await lookup(secret);
    if (!p) throw new RequestError('unknown or revoked API key', 401);
    req.principal = p;
  };
}

export function need(req: FastifyRequest, role: Role): Principal {
  const p = req.principal;
  if (!p) throw new RequestError('not authenticated', 401);
  if (RANK[p.role] < RANK[role]) throw new RequestError(`this needs the ${role} role; your key is ${p.role}`, 403);
  return p;
}

/** A run or reconciliation id belongs to the caller's tenant, or it does not exist for them. */
export function ownId(p: Principal, id: string, kind: 'pipeline' | 'reconcile'): void {
  if (!id.startsWith(`${kind}/${p.tenant}/`)) throw new RequestError(`no ${kind === 'pipeline' ? 'run' : 'reconciliation'} ${id}`, 404);
}
