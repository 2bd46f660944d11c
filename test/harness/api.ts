/** The HTTP API over a test stack, in the test's own process, and reading its answers. */
import type { FastifyInstance } from 'fastify';
import { inject } from 'vitest';
import { buildApi, type ApiDeps } from '../../api/app.js';
import { loadConfig } from '../../schemas/config.js';
import type { TestStack } from './temporal.js';

export interface StackApi {
  app: FastifyInstance;
  /** http://127.0.0.1:PORT */
  base: string;
}

/**
 * The API on the stack's metastore, Temporal client, lake, S3 and connections, configured
 * with the stack's task queue and the run's Temporal address plus `env`, listening on a free
 * port. Triggers stay queued (`dispatcher: false`) unless `deps.dispatcher` says otherwise;
 * any other `deps` replace the stack's. The caller closes `app`.
 */
export async function stackApi(
  stack: TestStack,
  o: { env?: Record<string, string> } & Partial<Omit<ApiDeps, 'config'>> = {},
): Promise<StackApi> {
  const { env, ...deps } = o;
  const config = loadConfig({
    STRATA_TASK_QUEUE: stack.taskQueue,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    ...env,
  });
  const { app } = await buildApi({
    db: stack.db,
    client: stack.client,
    lake: stack.lake,
    s3: stack.s3,
    connections: stack.connections,
    config,
    ...deps,
    dispatcher: 'dispatcher' in deps ? deps.dispatcher : false,
  });
  return { app, base: await app.listen({ host: '127.0.0.1', port: 0 }) };
}

/** An answer's status, headers and text, and its body as JSON when it is JSON (else undefined). */
export async function readAnswer(r: Response): Promise<{ status: number; json: any; text: string; headers: Headers }> {
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text, headers: r.headers };
}
