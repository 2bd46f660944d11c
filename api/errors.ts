import type { FastifyError, FastifyInstance } from 'fastify';
import type { z } from 'zod';
import { formatPath, type Problem } from '../schemas/pipeline.js';
import { RequestError } from './runs-service.js';

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

export function installErrorHandler(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError | RequestError | Error, req, reply) => {
    if (err instanceof RequestError) return reply.status(err.status).send({ error: err.message, problems: err.problems.length ? err.problems : undefined });
    const fe = err as FastifyError;
    if (fe.statusCode && fe.statusCode < 500) return reply.status(fe.statusCode).send({ error: fe.message });
    req.log.error({ err }, 'request failed');
    return reply.status(500).send({ error: 'internal error; see the API logs' });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
}
