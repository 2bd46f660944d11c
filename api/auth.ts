/** Bearer-key authentication, roles and tenant scoping. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Db } from '../store/db.js';
import { cachedKeyLookup, type Principal, type Role } from '../store/keys.js';
import { AuditStore, RUN_TOKEN_PREFIX } from '../store/iceberg-audit.js';
import { RequestError } from '../schemas/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const RANK = new Map<string, number>([
  ['viewer', 0],
  ['operator', 1],
  ['admin', 2],
]);

export function authenticator(
  db: Db,
  bootstrap?: { key: string; tenant: string },
  lookup = cachedKeyLookup(db),
  sessions?: (sid: string | undefined) => Promise<Principal | undefined>,
) {
  const bootHash = bootstrap ? createHash('sha256').update(bootstrap.key).digest() : undefined;
  return async (req: FastifyRequest, _reply: FastifyReply) => {
    const h = req.headers.authorization;
    if (h === undefined && sessions) {
      // A browser session (api/sessions.ts) reads only: changing anything needs a key, so no
      // cross-site request can act for a signed-in person.
      const sid = sessionCookie(req);
      if (sid !== undefined) {
        const s = await sessions(sid);
        if (!s) throw new RequestError('your browser session has ended: sign in again at /login', 401);
        if (req.method !== 'GET' && req.method !== 'HEAD')
          throw new RequestError(
            `a browser session only reads: send "Authorization: Bearer <api key>" to ${req.method}`,
            401,
          );
        req.principal = { tenant: s.tenant, role: s.role, keyId: s.keyId, ...(s.superuser ? { superuser: true } : {}) };
        return;
      }
    }
    if (!h?.startsWith('Bearer ')) throw new RequestError('send "Authorization: Bearer <api key>"', 401);
    const secret = h.slice(7).trim();
    if (bootHash && bootstrap && timingSafeEqual(createHash('sha256').update(secret).digest(), bootHash)) {
      req.principal = { tenant: bootstrap.tenant, role: 'admin', keyId: 'bootstrap', superuser: true };
      return;
    }
    if (secret.startsWith(RUN_TOKEN_PREFIX)) {
      // A job's catalog credential: operator on its tenant's warehouse, for the Iceberg routes only.
      const run = await new AuditStore(db).credential(secret);
      if (!run) throw new RequestError('this run credential has expired or was revoked (its task has ended)', 401);
      req.principal = { tenant: run.tenant, role: 'operator', keyId: `run:${run.branch}`, run };
      return;
    }
    const p = await lookup(secret);
    if (!p) throw new RequestError('unknown or revoked API key', 401);
    req.principal = p;
  };
}

function sessionCookie(req: FastifyRequest): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === 'strata_session') return part.slice(i + 1).trim() || undefined;
  }
  return undefined;
}

export function need(req: FastifyRequest, role: Role, o: { run?: boolean } = {}): Principal {
  const p = req.principal;
  if (!p) throw new RequestError('not authenticated', 401);
  if (p.run && !o.run)
    throw new RequestError(
      `a run's catalog credential reads the Iceberg catalog and writes its task's outputs; it cannot ${req.method} ${req.routeOptions?.url ?? req.url}`,
      403,
    );
  if ((RANK.get(p.role) ?? -1) < RANK.get(role)!)
    throw new RequestError(`this needs the ${role} role; your key is ${p.role}`, 403);
  return p;
}

/**
 * The one ownership check: a record belongs to the caller's tenant, or it does not exist
 * for them (404 with `missing`, the same answer as for an id nobody has). `tenant` is the
 * tenant stored with the record (runs index, trigger outbox, workflow search attribute),
 * or the tenant segment of its id; a record without one is nobody's.
 */
export function owns(p: Principal, tenant: string | null | undefined, missing: string): void {
  if (typeof tenant !== 'string' || tenant !== p.tenant) throw new RequestError(missing, 404);
}

export type IdKind = 'pipeline' | 'reconcile';
export const missingId = (kind: IdKind, id: string) => `no ${kind === 'pipeline' ? 'run' : 'reconciliation'} ${id}`;

/** The tenant segment of a `kind/tenant/…` id (run and reconciliation ids), or undefined if the id is not one. */
export function idTenant(id: string, kind: IdKind): string | undefined {
  const parts = id.split('/');
  return parts.length >= 3 && parts[0] === kind && parts.every((x) => x.length > 0) ? parts[1] : undefined;
}

/** A run or reconciliation id whose tenant segment is the caller's (checked before any lookup); else 404. */
export function ownId(p: Principal, id: string, kind: IdKind): void {
  owns(p, idTenant(id, kind), missingId(kind, id));
}
