import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { formatPath, type Problem } from '../schemas/pipeline.js';
import { fmtBytes, LIMITS, valueProblem } from '../schemas/limits.js';
import { RequestError } from '../schemas/errors.js';

/** Parses with zod, or answers 400 naming every field and its problem. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value ?? {});
  if (r.success) return r.data;
  const problems: Problem[] = r.error.issues.map((i) => ({
    path: `${where}${i.path.length ? '.' + formatPath(i.path) : ''}`,
    message: i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}` : i.message,
  }));
  throw new RequestError(problems.map((p) => `${p.path}: ${p.message}`).join('; '), 400, problems);
}

/** A log line of the API (500s): request id, route, and the internal error the caller never sees. */
export type ApiLog = (entry: {
  level: 'error';
  msg: string;
  requestId: string;
  method: string;
  route: string;
  error: string;
}) => void;
export const stderrLog: ApiLog = (entry) =>
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), ...entry }) + '\n');

/**
 * JSON bodies: Fastify's parser (which refuses `__proto__` and `constructor.prototype` keys),
 * then an object at the top, at most LIMITS.jsonDepth deep, with no NUL or broken strings.
 * Text bodies (YAML specs) arrive as strings. Other content types are 415.
 */
export function installBodyParsers(app: FastifyInstance) {
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, raw, done) => {
    const body = String(raw);
    if (body.trim() === '')
      return done(
        new RequestError('the body is empty but content-type says JSON: send a JSON object, or no content-type', 400),
        undefined,
      );
    void json(req, body, (err, value) => {
      if (err) {
        // Fastify refuses valid JSON that would poison prototypes; say so, else say where the JSON breaks.
        let syntax: string | undefined;
        try {
          JSON.parse(body);
        } catch (e) {
          syntax = (e as Error).message.slice(0, 200);
        }
        return done(
          new RequestError(
            syntax
              ? `the body is not valid JSON: ${syntax}`
              : 'the JSON body uses the reserved key "__proto__" (or "constructor" holding "prototype"): rename it',
            400,
          ),
          undefined,
        );
      }
      if (!value || typeof value !== 'object' || Array.isArray(value))
        return done(
          new RequestError(
            `the JSON body must be an object ({…}), not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`}`,
            400,
          ),
          undefined,
        );
      const problem = valueProblem(value);
      done(problem ? new RequestError(problem, 400) : null, problem ? undefined : value);
    });
  });
  app.addContentTypeParser(
    ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'],
    { parseAs: 'string' },
    (_req, body, done) => {
      if (typeof body === 'string' && body.includes('\0'))
        return done(new RequestError('the body holds a NUL character: remove it', 400), undefined);
      done(null, body);
    },
  );
}

/**
 * Path and query values: each given once, with no control characters (400 before any lookup).
 * The Iceberg REST routes take the unit separator (0x1F) in values: the spec joins a
 * multi-level namespace with it (`bronze%1Fraw`), and each level is then checked as a name.
 */
export function checkRequestValues(req: FastifyRequest) {
  // eslint-disable-next-line no-control-regex
  const control = /[\u0000-\u001f\u007f]/;
  // eslint-disable-next-line no-control-regex
  const valueControl = req.url.startsWith('/iceberg/') ? /[\u0000-\u001e\u007f]/ : control;
  const check = (where: string, values: unknown) => {
    if (!values || typeof values !== 'object') return;
    for (const [k, v] of Object.entries(values)) {
      if (Array.isArray(v)) throw new RequestError(`${where} ${k} is given ${v.length} times: give it once`, 400);
      if (typeof v === 'string' && (valueControl.test(v) || control.test(k)))
        throw new RequestError(`${where} ${k.replace(/[^\x20-\x7e]/g, '?')} holds a control character: remove it`, 400);
    }
  };
  check('path parameter', req.params);
  check('query parameter', req.query);
}

/** The body limit of the route that answered (the default, or the route's own). */
const bodyLimitOf = (req: FastifyRequest) => req.routeOptions.bodyLimit ?? LIMITS.bodyBytes;

export function installErrorHandler(app: FastifyInstance, log: ApiLog) {
  app.setErrorHandler((err: FastifyError | RequestError | Error, req, reply) => {
    reply.header('x-request-id', req.id);
    if (err instanceof RequestError)
      return reply
        .status(err.status)
        .send({ error: err.message, problems: err.problems.length ? err.problems : undefined, requestId: req.id });
    const fe = err as FastifyError;
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = bodyLimitOf(req);
      return reply.status(413).send({
        error: `the request body is over this route's limit of ${fmtBytes(limit)}: send less${req.routeOptions.url === '/api/v1/pipelines' ? ' (split the pipeline into smaller ones)' : ''}`,
        limitBytes: limit,
        requestId: req.id,
      });
    }
    if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return reply.status(415).send({
        error: `content-type ${String(req.headers['content-type'] ?? '(none)').slice(0, 100)} is not accepted: send application/json (or a YAML spec as application/yaml)`,
        requestId: req.id,
      });
    // Fastify's own request errors (bad URL, bad JSON, …) say what is wrong; anything else is ours.
    if (typeof fe.code === 'string' && fe.code.startsWith('FST_') && fe.statusCode && fe.statusCode < 500)
      return reply.status(fe.statusCode).send({ error: fe.message, requestId: req.id });
    log({
      level: 'error',
      msg: 'request failed',
      requestId: req.id,
      method: req.method,
      route: req.routeOptions.url ?? req.url.split('?')[0].slice(0, 200),
      error: err.stack ?? String(err),
    });
    return reply
      .status(500)
      .send({ error: `internal error: the API logged it under request id ${req.id}`, requestId: req.id });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({
      error: `no route ${req.method} ${req.url.split('?')[0].slice(0, 200)}: the routes are listed at /docs`,
      requestId: req.id,
    }),
  );
}
