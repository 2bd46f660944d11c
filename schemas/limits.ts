/**
 * The HTTP API's limits, in one place (the README's "API limits" table lists them).
 * Over a limit is a 400 (or 413 for a body) whose message names the limit and what to change.
 */
export const LIMITS = {
  /** Request body of a route, unless the route says otherwise (JSON or text). */
  bodyBytes: 1024 * 1024,
  /** POST /api/v1/pipelines: a spec (YAML or JSON). A 50,000-task spec with a few hundred bytes of SQL per task (about 17 MB) fits. */
  specBytes: 32 * 1024 * 1024,
  /** Tasks in one pipeline spec (the scale benchmark runs 10,000). */
  tasksPerSpec: 50_000,
  /** Nesting of a JSON body or a spec (objects and arrays). */
  jsonDepth: 64,
  /**
   * Run parameters of one trigger, schedule or transform: names and values together (UTF-8),
   * checked on the body before anything else; each declared param's own limits (length,
   * count, total: PARAM_LIMITS in schemas/params.ts) are checked when the values resolve.
   */
  paramsBytes: 64 * 1024,
  /** Cron expressions of one schedule, and the length of each. */
  cronsPerSchedule: 20,
  cronChars: 200,
  /** Pipeline versions are Postgres integers. */
  maxVersion: 2_147_483_647,
  /** Managed clusters created through the API (durations in ms). */
  clusterIdleMs: { min: 60_000, max: 7 * 86_400_000 },
  clusterLifetimeMs: { min: 60_000, max: 30 * 86_400_000 },
  clusterPollMs: { min: 100, max: 10 * 60_000 },
  /** Reconciliations: the in-memory comparison's budget (inputs above it take the partitioned path). */
  reconcileMemoryBytes: 4 * 1024 * 1024 * 1024,
  /** POST /api/v1/queries: the SQL text (characters). */
  querySqlChars: 64 * 1024,
  /** Rows one statement may answer (more is an error; a smaller `rowLimit` truncates instead). */
  queryRows: 100_000,
  /** One statement's result as JSON, all chunks together. */
  queryResultBytes: 64 * 1024 * 1024,
  /** One chunk of a result (the first comes inline; GET …/result/chunks/{n} the others). */
  queryChunkBytes: 1024 * 1024,
  /** How long a statement may run (its `timeout` may ask for less), in seconds. */
  queryTimeoutSeconds: { default: 300, max: 900 },
  /** How long POST waits for the answer before returning a statement id to poll, in seconds. */
  queryWaitSeconds: { default: 10, max: 50 },
  /** How long results (and the request id that found them) are kept after the statement ends. */
  queryKeepMs: 3_600_000,
  /** Statements of one tenant running at once in this API. */
  queryRunningPerTenant: 4,
  /** POST /api/v1/libraries: one library file (a JAR or a Python wheel/zip). */
  libraryBytes: 64 * 1024 * 1024,
  /** A browser session (POST /login) lasts this long. */
  sessionMs: 2 * 3_600_000,
} as const;

/** Routes whose body limit is not LIMITS.bodyBytes (`METHOD /url` as registered). */
export const BODY_LIMITS = new Map<string, number>([
  ['POST /api/v1/pipelines', LIMITS.specBytes],
  ['POST /api/v1/keys', 16 * 1024],
  ['POST /api/v1/clusters', 16 * 1024],
  ['POST /api/v1/clusters/:name/resize', 16 * 1024],
  ['POST /api/v1/pipelines/:id/schedules/:sid/backfill', 16 * 1024],
  ['POST /api/v1/reconciliations', 64 * 1024],
  ['POST /api/v1/pipelines/:id/schedules', 256 * 1024],
  ['PATCH /api/v1/pipelines/:id/schedules/:sid', 256 * 1024],
  ['POST /api/v1/queries', 256 * 1024],
  ['POST /api/v1/libraries', LIMITS.libraryBytes],
  ['POST /login', 4 * 1024],
  ['POST /logout', 4 * 1024],
]);

/** 1048576 → "1 MiB", 65536 → "64 KiB", 1000 → "1,000 bytes". */
export function fmtBytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  return `${n.toLocaleString('en')} bytes`;
}

/** 600000 → "10m", 100 → "100ms": the largest whole unit, for messages. */
export function fmtMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Why a parsed body (or spec) is refused, or undefined: nesting deeper than `jsonDepth`,
 * a NUL character or a broken UTF-16 string (the metastore cannot store either). Walks at
 * most `jsonDepth` levels deep, so the walk itself cannot overflow the stack.
 */
export function valueProblem(v: unknown, where = 'body'): string | undefined {
  const bad = (s: string) => s.includes('\0') || LONE_SURROGATE.test(s);
  const walk = (x: unknown, depth: number, path: string): string | undefined => {
    if (typeof x === 'string')
      return bad(x) ? `${path}: a string holds a NUL character or a lone surrogate: remove it` : undefined;
    if (!x || typeof x !== 'object') return undefined;
    if (depth >= LIMITS.jsonDepth)
      return `${where} nests deeper than ${LIMITS.jsonDepth} levels of objects and arrays: flatten it`;
    if (Array.isArray(x)) {
      for (let i = 0; i < x.length; i++) {
        const p = walk(x[i], depth + 1, `${path}[${i}]`);
        if (p) return p;
      }
      return undefined;
    }
    for (const [k, val] of Object.entries(x)) {
      if (bad(k)) return `${path}: a key holds a NUL character or a lone surrogate: remove it`;
      const p = walk(val, depth + 1, `${path}.${k}`);
      if (p) return p;
    }
    return undefined;
  };
  return walk(v, 0, where);
}
