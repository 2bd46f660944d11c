/**
 * The codec endpoint for the Temporal Web UI and `temporal --codec-endpoint`:
 * `POST /codec/decode` and `/codec/encode` (also `/codec/{namespace}/…`), proto3 JSON
 * `{"payloads":[{"metadata":{"k":"<base64>"},"data":"<base64>"}]}`.
 *
 * The caller is a Strata API key (`Authorization: Bearer`, which the UI sends with its
 * codec setting "pass access token", or a session cookie from `/codec/login` for a UI
 * without login, sent with "include cross-origin credentials"). A payload is decoded only
 * for a caller of its tenant (the bootstrap admin: every tenant); the others come back as
 * they were, still encrypted. Encoding (the UI starting or signalling a workflow) needs
 * the operator role and encrypts for the caller's tenant. CORS answers the UI's origin.
 */
import type { Payload } from '@temporalio/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { payloadTenant, TenantPayloadCodec } from '../client/codec.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { parse } from './errors.js';
import { RequestError } from './runs-service.js';

const PayloadsBody = z.object({
  payloads: z
    .array(z.object({ metadata: z.record(z.string(), z.string()).nullish(), data: z.string().nullish() }).passthrough())
    .max(10_000),
});
type JsonPayload = { metadata?: Record<string, string> | null; data?: string | null };

const SESSION_COOKIE = 'strata_codec_session';
const SESSION_MS = 8 * 3600_000;

export function codecRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  authenticate: (req: FastifyRequest, reply: FastifyReply) => Promise<void>,
  uiUrl: string,
) {
  const codec = ctx.client.options.loadedDataConverter.payloadCodecs.find(
    (c): c is TenantPayloadCodec => c instanceof TenantPayloadCodec,
  );
  const uiOrigin = new URL(uiUrl).origin;
  const sessions = new Map<string, { secret: string; until: number }>();

  app.addHook('onRequest', async (req, reply) => {
    if (!req.url.startsWith('/codec/')) return;
    if (req.headers.origin === uiOrigin) {
      reply.header('access-control-allow-origin', uiOrigin).header('access-control-allow-credentials', 'true');
    }
    reply.header('vary', 'Origin');
  });

  /** The caller: a Bearer key, else the key behind a /codec/login session cookie. */
  const caller = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!req.headers.authorization) {
      const sid = cookie(req, SESSION_COOKIE);
      const s = sid ? sessions.get(sid) : undefined;
      if (s && s.until > Date.now()) req.headers.authorization = `Bearer ${s.secret}`;
    }
    await authenticate(req, reply);
  };
  const namespaceOk = (req: FastifyRequest) => {
    const ns = (req.params as { namespace?: string }).namespace;
    if (ns !== undefined && ns !== ctx.config.TEMPORAL_NAMESPACE)
      throw new RequestError(`this codec serves namespace ${ctx.config.TEMPORAL_NAMESPACE}, not ${ns}`, 404);
  };

  const schema = { tags: ['codec'], security: [{ bearer: [] }] };
  for (const prefix of ['/codec', '/codec/:namespace']) {
    app.options(`${prefix}/decode`, { schema: { ...schema, summary: 'CORS preflight' } }, preflight(uiOrigin));
    app.options(`${prefix}/encode`, { schema: { ...schema, summary: 'CORS preflight' } }, preflight(uiOrigin));
    app.post(
      `${prefix}/decode`,
      { schema: { ...schema, summary: 'Decode payloads of the caller’s tenant (others are returned as they are)' } },
      async (req, reply) => {
        namespaceOk(req);
        await caller(req, reply);
        const p = need(req, 'viewer');
        const body = parse(PayloadsBody, req.body, 'body');
        const out = body.payloads.map((j) => {
          const pl = fromJson(j);
          const tenant = payloadTenant(pl);
          if (!codec || tenant === undefined || !(p.superuser || tenant === p.tenant)) return j;
          try {
            return toJson(codec.decrypt(pl));
          } catch {
            return j; // tampered, or its key is gone: the UI shows it as it is
          }
        });
        return reply.send({ payloads: out });
      },
    );
    app.post(
      `${prefix}/encode`,
      { schema: { ...schema, summary: 'Encrypt payloads for the caller’s tenant' } },
      async (req, reply) => {
        namespaceOk(req);
        await caller(req, reply);
        const p = need(req, 'operator');
        const body = parse(PayloadsBody, req.body, 'body');
        return reply.send({
          payloads: body.payloads.map((j) => (codec ? toJson(codec.encrypt(fromJson(j), p.tenant)) : j)),
        });
      },
    );
  }

  // A session for a Web UI that has no login of its own (the dev server's): the browser
  // keeps an HttpOnly, same-site cookie and sends it with "include cross-origin credentials".
  app.get(
    '/codec/login',
    { schema: { tags: ['codec'], summary: 'A form that opens a codec session for the Web UI' } },
    async (_req, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .send(
          `<!doctype html><meta charset="utf-8"><title>Strata codec session</title><body style="font-family:sans-serif;max-width:40em;margin:3em auto">` +
            `<h1>Decode payloads in the Temporal Web UI</h1><p>Paste a Strata API key. The browser keeps a session (8 hours) that the UI's codec requests carry when its codec setting "Include cross-origin credentials" is on; payloads of the key's tenant are then decoded.</p>` +
            `<form method="post" action="/codec/login"><input type="password" name="key" size="60" autocomplete="off" required> <button>Open session</button></form>`,
        ),
  );
  // The login form is the one route that takes a form body: its parser lives in this route's own scope.
  app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) =>
      done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    scope.post(
      '/codec/login',
      { schema: { tags: ['codec'], summary: 'Open a codec session cookie for an API key' } },
      async (req, reply) => {
        const key = String((req.body as { key?: string } | undefined)?.key ?? '').trim();
        if (!key) throw new RequestError('send the form field "key" with a Strata API key', 400);
        req.headers.authorization = `Bearer ${key}`;
        await authenticate(req, reply);
        const p = need(req, 'viewer');
        const sid = randomBytes(24).toString('base64url');
        const now = Date.now();
        for (const [k, s] of sessions) if (s.until < now) sessions.delete(k);
        if (sessions.size > 10_000) sessions.clear();
        sessions.set(sid, { secret: key, until: now + SESSION_MS });
        reply.header(
          'set-cookie',
          `${SESSION_COOKIE}=${sid}; HttpOnly; SameSite=Strict; Path=/codec; Max-Age=${SESSION_MS / 1000}`,
        );
        return reply
          .type('text/html; charset=utf-8')
          .send(
            `<!doctype html><meta charset="utf-8"><p>Codec session open for tenant <b>${p.tenant}</b>. Back to the <a href="${uiUrl}">Temporal Web UI</a>.</p>`,
          );
      },
    );
  });
}

function preflight(uiOrigin: string) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.headers.origin !== uiOrigin)
      return reply.status(403).send({
        error: `origin ${req.headers.origin ?? '(none)'} may not call the codec; only the Temporal UI at ${uiOrigin} (TEMPORAL_UI_URL)`,
        requestId: req.id,
      });
    return reply
      .status(204)
      .header('access-control-allow-methods', 'POST, OPTIONS')
      .header('access-control-allow-headers', 'Content-Type, Authorization, Authorization-Extras, X-Namespace')
      .header('access-control-max-age', '600')
      .send();
  };
}

function cookie(req: FastifyRequest, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

export function fromJson(j: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(
      Object.entries(j.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))]),
    ),
    data: new Uint8Array(Buffer.from(j.data ?? '', 'base64')),
  };
}

export function toJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(
      Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')]),
    ),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}
