/**
 * Sign-in for browsers: `GET /login` (a form), `POST /login` exchanges an API key for a
 * short-lived session cookie (HttpOnly, SameSite=Lax, LIMITS.sessionMs), `POST /logout`
 * ends it. A session is its key's tenant and role, kept in the metastore
 * (`browser_sessions`, only a hash of the cookie), so it survives an API restart and ends
 * with its key. Sessions authenticate reading requests (GET/HEAD) only: a state-changing
 * request still needs a Bearer key, so no cross-site form can act for a signed-in person.
 * The two forms that change state (sign-in, sign-out) carry a CSRF token checked against a
 * cookie or the session, and refuse a cross-site Origin. A browser asking for a page
 * without a key or session is sent to `/login?next=…` (see api/app.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '../store/db.js';
import type { Principal, Role } from '../store/keys.js';
import { LIMITS } from '../schemas/limits.js';
import { RequestError } from '../schemas/errors.js';

export const SESSION_COOKIE = 'strata_session';
const LOGIN_CSRF_COOKIE = 'strata_login_csrf';
const hash = (s: string) => createHash('sha256').update(s).digest('hex');

export function cookieOf(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A local path to go to after sign-in (never another site: `//host`, `/\host`, schemes are refused). */
export function safeNext(next: unknown): string {
  return typeof next === 'string' &&
    /^\/(?![/\\])[\x21-\x7e]*$/.test(next) &&
    !next.startsWith('/login') &&
    !next.startsWith('/logout')
    ? next
    : '/docs';
}

export interface Session extends Principal {
  csrf: string;
}

/** The live session behind a cookie value, or undefined (expired, unknown, or its key revoked). */
export async function findSession(db: Db, sid: string | undefined): Promise<Session | undefined> {
  if (!sid || !/^[A-Za-z0-9_-]{20,100}$/.test(sid)) return undefined;
  const r = (
    await db.query<{ tenant: string; role: Role; key_id: string; superuser: boolean; csrf: string }>(
      `SELECT s.tenant, s.role, s.key_id, s.superuser, s.csrf FROM browser_sessions s
        WHERE s.id_hash = $1 AND s.expires_at > now()
          AND (s.key_id = 'bootstrap' OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.key_id AND k.revoked_at IS NULL))`,
      [hash(sid)],
    )
  ).rows[0];
  return (
    r && { tenant: r.tenant, role: r.role, keyId: r.key_id, ...(r.superuser ? { superuser: true } : {}), csrf: r.csrf }
  );
}

/** The request's own origin, to compare a browser's Origin header with. */
const ownOrigin = (req: FastifyRequest) => `${req.protocol}://${req.headers.host ?? ''}`;

function sameOrigin(req: FastifyRequest) {
  const o = req.headers.origin;
  if (o !== undefined && o !== 'null' && o !== ownOrigin(req))
    throw new RequestError(
      `a form from ${String(o).slice(0, 100)} may not sign in or out here: use the page at ${ownOrigin(req)}/login`,
      403,
    );
  if (o === 'null')
    throw new RequestError('a form from an opaque origin may not sign in or out: use the page at /login', 403);
}

function cookie(req: FastifyRequest, name: string, value: string, maxAgeS: number, path = '/') {
  return `${name}=${value}; HttpOnly; SameSite=Lax; Path=${path}; Max-Age=${maxAgeS}${req.protocol === 'https' ? '; Secure' : ''}`;
}

const page = (title: string, body: string) =>
  `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)}</title>` +
  `<body style="font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em"><h1>${esc(title)}</h1>${body}</body></html>`;

export function sessionRoutes(
  app: FastifyInstance,
  db: Db,
  authenticate: (req: FastifyRequest, reply: FastifyReply) => Promise<void>,
) {
  const loginForm = (req: FastifyRequest, reply: FastifyReply, next: string, error?: string, status = 200) => {
    const token = randomBytes(24).toString('base64url');
    return reply
      .status(status)
      .header('set-cookie', cookie(req, LOGIN_CSRF_COOKIE, token, 600, '/login'))
      .header('cache-control', 'no-store')
      .header(
        'content-security-policy',
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
      )
      .type('text/html; charset=utf-8')
      .send(
        page(
          'Sign in to Strata',
          `${error ? `<p id="error" role="alert" style="color:#b91c1c">${esc(error)}</p>` : ''}` +
            `<p>Paste a Strata API key. The browser keeps a session of ${LIMITS.sessionMs / 3_600_000} hours ` +
            `with the key's tenant and role; it can open pages and read, and changes nothing.</p>` +
            `<form method="post" action="/login"><input type="hidden" name="csrf" value="${token}"><input type="hidden" name="next" value="${esc(next)}">` +
            `<label>API key <input type="password" name="key" id="key" size="50" autocomplete="off" required></label> <button id="sign-in">Sign in</button></form>`,
        ),
      );
  };

  app.get<{ Querystring: { next?: string } }>(
    '/login',
    { schema: { tags: ['sessions'], summary: 'The sign-in form for browsers' } },
    async (req, reply) => {
      const next = safeNext(req.query.next);
      const s = await findSession(db, cookieOf(req, SESSION_COOKIE));
      if (s)
        return reply
          .header('cache-control', 'no-store')
          .type('text/html; charset=utf-8')
          .send(
            page(
              'Strata',
              `<p id="who">Signed in to tenant <b>${esc(s.tenant)}</b> as ${esc(s.role)}.</p><p><a href="${esc(next)}">Continue</a> · <a href="/docs">API docs</a></p>` +
                `<form method="post" action="/logout"><input type="hidden" name="csrf" value="${esc(s.csrf)}"><button id="sign-out">Sign out</button></form>`,
            ),
          );
      return loginForm(req, reply, next);
    },
  );

  // The two forms take form bodies: their parser lives in this scope only.
  app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) =>
      done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    scope.post(
      '/login',
      { schema: { tags: ['sessions'], summary: 'Exchange an API key for a browser session cookie' } },
      async (req, reply) => {
        sameOrigin(req);
        const f = (req.body ?? {}) as Record<string, string>;
        const next = safeNext(f.next);
        const expected = cookieOf(req, LOGIN_CSRF_COOKIE);
        if (!expected || typeof f.csrf !== 'string' || !same(f.csrf, expected))
          return loginForm(
            req,
            reply,
            next,
            'The sign-in form expired or came from elsewhere: sign in again here.',
            403,
          );
        const key = String(f.key ?? '').trim();
        if (!key) return loginForm(req, reply, next, 'Paste an API key.', 400);
        req.headers.authorization = `Bearer ${key}`;
        try {
          await authenticate(req, reply);
        } catch (e) {
          if (e instanceof RequestError && e.status === 401)
            return loginForm(req, reply, next, 'That key is unknown or revoked.', 401);
          throw e;
        }
        const p = req.principal!;
        // A job's catalog credential is no way in: the session would outlive its narrow scope.
        if (p.run)
          return loginForm(req, reply, next, 'That is a run credential of the Iceberg catalog, not an API key.', 401);
        const sid = randomBytes(32).toString('base64url');
        const csrf = randomBytes(24).toString('base64url');
        await db.query("DELETE FROM browser_sessions WHERE expires_at < now() - interval '1 day'");
        await db.query(
          `INSERT INTO browser_sessions (id_hash, tenant, key_id, role, superuser, csrf, expires_at) VALUES ($1, $2, $3, $4, $5, $6, now() + ($7 || ' milliseconds')::interval)`,
          [hash(sid), p.tenant, p.keyId, p.role, !!p.superuser, csrf, String(LIMITS.sessionMs)],
        );
        return reply
          .status(303)
          .header('set-cookie', [
            cookie(req, SESSION_COOKIE, sid, LIMITS.sessionMs / 1000),
            cookie(req, LOGIN_CSRF_COOKIE, '', 0, '/login'),
          ])
          .header('location', next)
          .header('cache-control', 'no-store')
          .send();
      },
    );
    scope.post(
      '/logout',
      { schema: { tags: ['sessions'], summary: 'End the browser session' } },
      async (req, reply) => {
        sameOrigin(req);
        const sid = cookieOf(req, SESSION_COOKIE);
        const s = await findSession(db, sid);
        const f = (req.body ?? {}) as Record<string, string>;
        if (s) {
          if (typeof f.csrf !== 'string' || !same(f.csrf, s.csrf))
            throw new RequestError('sign out from the form at /login (the request carried no valid CSRF token)', 403);
          await db.query('DELETE FROM browser_sessions WHERE id_hash = $1', [hash(sid!)]);
        }
        return reply
          .status(303)
          .header('set-cookie', cookie(req, SESSION_COOKIE, '', 0))
          .header('location', '/login')
          .send();
      },
    );
  });
}
