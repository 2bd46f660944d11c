/**
 * The OpenAPI 3.0.3 document at /docs/json: request bodies from the zod schemas in OpenAPI
 * 3.0 form (not JSON Schema 2020-12), and every operation's error answers, all with the one
 * error body the API sends (api/errors.ts): `{ error, problems?, requestId }`.
 */
import { z } from 'zod';

/** A request body schema for the document (validation itself is zod's, in the handlers). */
export const docBodySchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'openapi-3.0' });

/** The body of every error answer. */
export const ERROR_SCHEMA = {
  type: 'object',
  required: ['error', 'requestId'],
  properties: {
    error: { type: 'string', description: 'What went wrong and what to change' },
    problems: {
      type: 'array',
      description: 'One entry per invalid field (bad input only)',
      items: {
        type: 'object',
        required: ['path', 'message'],
        properties: { path: { type: 'string' }, message: { type: 'string' } },
      },
    },
    requestId: { type: 'string', description: 'Also in the x-request-id header; 500s are logged under it' },
    limitBytes: { type: 'integer', description: "The route's body limit (413 only)" },
  },
} as const;

/** The Iceberg REST catalog's error body (its spec's IcebergErrorResponse), answered under /iceberg/. */
export const ICEBERG_ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'code'],
      properties: {
        message: { type: 'string', description: 'What went wrong and what to change' },
        type: { type: 'string', description: 'The error type, e.g. CommitFailedException, NoSuchTableException' },
        code: { type: 'integer', minimum: 400, maximum: 600 },
      },
    },
  },
} as const;

const WHY: Record<number, string> = {
  400: 'Bad input: a field, parameter or body is invalid (`error` says what to change, `problems` lists each field)',
  401: 'No API key, or an unknown or revoked one',
  403: "Not allowed: the key's role is too low, or the request reaches past the key's tenant or tier",
  404: 'Not found (or not visible to the key’s tenant)',
  409: 'Conflicts with the current state (already exists, already ended, still running, not configured for the tenant)',
  410: 'That version of the dataset was expired by table maintenance',
  413: "The body is over the route's limit",
  422: 'The request contradicts itself (a property both set and removed)',
  415: 'The content-type is not accepted (send application/json, or a YAML spec as application/yaml)',
  429: "Too many of the tenant's statements are running at once: wait for one to end, or cancel one",
  500: 'Internal error, logged under the request id',
  502: 'An outside system (Airbyte) failed or refused the API’s credentials',
  503: 'A dependency is not configured or not available right now; try again or configure it',
};

type Op = 'get' | 'post' | 'patch' | 'put' | 'delete' | 'options' | 'head';

/** Errors some operations answer beyond those every operation of their kind does; keyed `METHOD /path` or `METHOD /prefix*`. */
export const SPECIFIC: Readonly<Record<string, number[]>> = {
  'POST /api/v1/pipelines/{id}/runs': [409],
  'POST /api/v1/transform': [409],
  'DELETE /api/v1/pipelines/{id}': [409],
  'POST /api/v1/pipelines/{id}/schedules': [409],
  'POST /api/v1/reconciliations/{id}/cancel': [409],
  'POST /api/v1/runs/{run}/cancel': [409],
  'POST /api/v1/runs/{run}/repair': [409],
  'GET /api/v1/runs/{run}/tasks/{task}/logs': [409],
  'POST /api/v1/clusters': [409],
  'POST /api/v1/clusters/{name}/resize': [409],
  'GET /api/v1/datasets/{ref}/preview': [410],
  // A request id reused for another statement, the tenant's running limit, no lake; a result not ready.
  'POST /api/v1/queries': [409, 429, 503],
  'GET /api/v1/queries/{id}/result/chunks/{n}': [409],
  // A run accepted but not started yet whose start keeps failing.
  '* /api/v1/runs/{run}*': [503],
  // No lake configured for this API.
  'GET /api/v1/datasets*': [503],
  // Airbyte: not configured or no workspace for the tenant, its refusals, its failures.
  '* /api/v1/ingestion/*': [404, 409, 502, 503],
  // The Iceberg REST catalog: a warehouse that is not the caller's; no lake; names taken, commits that lost a race.
  'GET /iceberg/v1/config': [404],
  '* /iceberg/v1/*': [503],
  'POST /iceberg/v1/{prefix}/namespaces': [409],
  'DELETE /iceberg/v1/{prefix}/namespaces/{namespace}': [409],
  'POST /iceberg/v1/{prefix}/namespaces/{namespace}/properties': [422],
  'POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables': [409],
  'POST /iceberg/v1/{prefix}/namespaces/{namespace}/register': [409],
  'POST /iceberg/v1/{prefix}/namespaces/{namespace}/tables/{table}': [409],
  'POST /iceberg/v1/{prefix}/tables/rename': [409],
};

/** Operations that take no key although their path is not public: the codec's CORS preflight, the sign-in forms. */
export const NO_KEY: readonly string[] = ['OPTIONS /codec/*', 'GET /codec/login', 'GET /login'];
/** Changes any key may make (viewer): no 403 for its role. The codec's preflight 403s on the origin instead. */
export const ANY_ROLE: readonly string[] = [
  'POST /codec/decode',
  'POST /codec/{namespace}/decode',
  'POST /codec/login',
  'POST /api/v1/queries',
  'POST /api/v1/queries/{id}/cancel',
];

/** Whether a rule key (`METHOD /path`, `*` for any method, a trailing `*` for a prefix) covers an operation. */
export const matches = (key: string, method: string, path: string) => {
  const [m, p] = key.split(' ');
  if (m !== '*' && m !== method.toUpperCase()) return false;
  return p.endsWith('*') ? path.startsWith(p.slice(0, -1)) : path === p;
};

function specific(method: string, path: string): number[] {
  return Object.entries(SPECIFIC).flatMap(([key, codes]) => (matches(key, method, path) ? codes : []));
}

/** The error statuses an operation documents. */
export function errorStatuses(method: Op, path: string, isPublic: boolean): number[] {
  const codes = new Set<number>([400, 500]);
  const hasBody = method === 'post' || method === 'patch' || method === 'put';
  const keyed = !isPublic && !NO_KEY.some((k) => matches(k, method, path));
  if (keyed) codes.add(401);
  // Roles above viewer (every change, and the key list), the tenant's tier and workspace.
  if (keyed && (method !== 'get' || path === '/api/v1/keys') && !ANY_ROLE.includes(`${method.toUpperCase()} ${path}`))
    codes.add(403);
  // The codec's CORS preflight refuses other origins.
  if (method === 'options') codes.add(403);
  // A path parameter names something that may not exist (the codec's preflight checks none).
  if (path.includes('{') && method !== 'options') codes.add(404);
  if (hasBody) {
    codes.add(413);
    codes.add(415);
  }
  for (const c of specific(method, path)) codes.add(c);
  return [...codes].sort((a, b) => a - b);
}

type Operation = { responses?: Record<string, unknown> } & Record<string, unknown>;
type Doc = {
  components?: { schemas?: Record<string, unknown> } & Record<string, unknown>;
  paths?: Record<string, Record<string, Operation | undefined>>;
};

/** Adds the error schema and each operation's error responses to the generated document (documentation only). */
export function withErrorResponses<D extends object>(given: D, publicPaths: ReadonlySet<string>): D {
  const doc = given as Doc;
  const components = {
    ...doc.components,
    schemas: { ...doc.components?.schemas, Error: ERROR_SCHEMA, IcebergError: ICEBERG_ERROR_SCHEMA },
  };
  const paths: Record<string, Record<string, Operation | undefined>> = {};
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    paths[path] = { ...item };
    for (const [method, op] of Object.entries(item)) {
      if (!op || typeof op !== 'object' || !('responses' in op)) continue;
      const responses: Record<string, unknown> = { ...op.responses };
      for (const code of errorStatuses(method as Op, path, publicPaths.has(path))) {
        responses[String(code)] ??= {
          description: WHY[code],
          content: {
            'application/json': {
              schema: { $ref: `#/components/schemas/${path.startsWith('/iceberg/') ? 'IcebergError' : 'Error'}` },
            },
          },
        };
      }
      if (path === '/ready')
        responses['503'] = {
          description: 'Not ready: a dependency does not answer',
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: {
                  ok: { type: 'boolean' },
                  checks: { type: 'object', additionalProperties: { type: 'string' } },
                },
              },
            },
          },
        };
      paths[path][method] = { ...op, responses };
    }
  }
  return { ...doc, components, paths } as D;
}
