/**
 * /api/v1/libraries: a tenant's UDF libraries. A JAR (or a Python wheel/zip for PySpark) is
 * uploaded as the raw body, kept in the tenant's lake under libraries/{name}/{version}/{file}
 * with its SHA-256 and the functions it declares. A version never changes: the same bytes
 * again are a no-op, other bytes a 409. A version the current version of a registered
 * pipeline pins cannot be deleted.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { forTenant } from '../activities/lake/open.js';
import { checkMacroLibrary, MacroLibraryError } from '../activities/sql/macros.js';
import { FUNCTION_NAME_RE, LIBRARY_NAME_RE, LIBRARY_VERSION_RE } from '../schemas/external.js';
import {
  deleteLibraryVersion,
  getLibraryVersion,
  insertLibraryVersion,
  libraryKey,
  listLibraryVersions,
  pipelinesPinning,
  type LibraryFunction,
  type LibraryKind,
  type LibraryVersion,
} from '../store/libraries.js';
import { need } from './auth.js';
import type { ApiContext } from './context.js';
import { fmtBytes, LIMITS } from '../schemas/limits.js';
import { RequestError } from '../schemas/errors.js';

/** Content types of an upload, and the kind of library each is. */
const KIND_OF: Record<string, LibraryKind> = {
  'application/java-archive': 'jar',
  'application/x-java-archive': 'jar',
  'application/zip': 'python',
  'application/x-wheel+zip': 'python',
  'application/sql': 'duckdb',
};
const EXT: Record<LibraryKind, RegExp> = { jar: /\.jar$/, python: /\.(whl|zip|egg)$/, duckdb: /\.sql$/ };
const DEFAULT_EXT: Record<LibraryKind, string> = { jar: '.jar', python: '.zip', duckdb: '.sql' };
/** A DuckDB macro library's SQL text (far more than any set of macros needs). */
const MACRO_LIBRARY_BYTES = 1024 * 1024;
const FILE_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
/** A JVM class (jar) or a Python module.attribute (python): dotted identifiers, nothing a SQL string could break out of. */
const CLASS_RE = /^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*){0,31}$/;
const RETURN_TYPE_RE = /^[A-Za-z][A-Za-z0-9_<>(), ]{0,127}$/;
export const FUNCTIONS_HEADER = 'strata-functions';

function view(v: LibraryVersion) {
  return {
    name: v.name,
    version: v.version,
    kind: v.kind,
    file: v.file,
    key: libraryKey(v.name, v.version, v.file),
    sha256: v.sha256,
    sizeBytes: v.sizeBytes,
    createdAt: v.createdAt,
    functions: v.functions,
  };
}

/** The declared functions from the Strata-Functions header (a JSON array). */
function declaredFunctions(req: FastifyRequest, kind: LibraryKind): LibraryFunction[] {
  const raw = req.headers[FUNCTIONS_HEADER];
  if (raw === undefined) return [];
  if (Array.isArray(raw))
    throw new RequestError(`header ${FUNCTIONS_HEADER} is given ${raw.length} times: give it once`, 400);
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    throw new RequestError(
      `header ${FUNCTIONS_HEADER} is not JSON: send an array like [{"name":"to_cents","class":"com.acme.udf.ToCents","returnType":"bigint"}]`,
      400,
    );
  }
  if (!Array.isArray(list))
    throw new RequestError(`header ${FUNCTIONS_HEADER} must be a JSON array of {name, class, returnType}`, 400);
  if (list.length > 256)
    throw new RequestError(
      `header ${FUNCTIONS_HEADER} declares ${list.length} functions: a library declares at most 256`,
      400,
    );
  const seen = new Set<string>();
  return list.map((f, i) => {
    const at = `${FUNCTIONS_HEADER}[${i}]`;
    if (!f || typeof f !== 'object' || Array.isArray(f))
      throw new RequestError(`${at} must be an object {name, class, returnType}`, 400);
    const { name, class: cls, returnType, ...rest } = f as Record<string, unknown>;
    if (Object.keys(rest).length)
      throw new RequestError(
        `${at}: unknown field(s) ${Object.keys(rest)
          .map((k) => `"${k.slice(0, 40)}"`)
          .join(', ')}: use name, class, returnType`,
        400,
      );
    if (typeof name !== 'string' || !FUNCTION_NAME_RE.test(name))
      throw new RequestError(
        `${at}.name must be letters, digits and "_", not starting with a digit (at most 128)`,
        400,
      );
    if (seen.has(name.toLowerCase())) throw new RequestError(`${at}.name: function "${name}" is declared twice`, 400);
    seen.add(name.toLowerCase());
    if (typeof cls !== 'string' || !CLASS_RE.test(cls))
      throw new RequestError(
        `${at}.class must be ${kind === 'jar' ? 'a fully qualified Java class such as com.acme.udf.ToCents' : 'a Python module.function such as udfs.money.to_cents'}`,
        400,
      );
    if (returnType !== undefined && (typeof returnType !== 'string' || !RETURN_TYPE_RE.test(returnType)))
      throw new RequestError(`${at}.returnType must be a SQL type such as bigint, string or decimal(18,2)`, 400);
    return { name, class: cls, ...(returnType ? { returnType } : {}) };
  });
}

/** A declared class that the archive does not hold (its entry names are stored uncompressed). */
function missingClass(body: Buffer, kind: LibraryKind, fns: LibraryFunction[]): LibraryFunction | undefined {
  return fns.find((f) => {
    if (kind === 'jar') return !body.includes(Buffer.from(`${f.class.replace(/\./g, '/')}.class`));
    const mod = f.class.split('.').slice(0, -1).join('/');
    return !mod || !(body.includes(Buffer.from(`${mod}.py`)) || body.includes(Buffer.from(`${mod}/__init__.py`)));
  });
}

const sameFunctions = (a: LibraryFunction[], b: LibraryFunction[]) => {
  const norm = (fs: LibraryFunction[]) =>
    JSON.stringify(fs.map((f) => [f.name, f.class, f.returnType ?? null]).sort((x, y) => (x[0]! < y[0]! ? -1 : 1)));
  return norm(a) === norm(b);
};

/** A DuckDB macro library's macros, read by DuckDB itself (400 naming the statement it refuses). */
async function macroFunctions(req: FastifyRequest, body: Buffer): Promise<LibraryFunction[]> {
  if (req.headers[FUNCTIONS_HEADER] !== undefined)
    throw new RequestError(
      `a DuckDB macro library declares its macros in its SQL: remove the ${FUNCTIONS_HEADER} header`,
      400,
    );
  if (body.length > MACRO_LIBRARY_BYTES)
    throw new RequestError(`a DuckDB macro library is at most ${fmtBytes(MACRO_LIBRARY_BYTES)} of SQL`, 413);
  const text = body.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(body) || text.includes('\u0000'))
    throw new RequestError('a DuckDB macro library is UTF-8 SQL text without NUL characters', 400);
  try {
    return (await checkMacroLibrary(text)).map((m) => ({ name: m.name, class: m.type }));
  } catch (e) {
    if (e instanceof MacroLibraryError) throw new RequestError(`the macro library is refused: ${e.message}`, 400);
    throw e;
  }
}

const isZip = (b: Buffer) =>
  b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6));

export function libraryRoutes(app: FastifyInstance, ctx: ApiContext) {
  const lakeOf = (tenant: string) => {
    if (!ctx.lake)
      throw new RequestError(
        'this API has no lake configured, so it cannot keep libraries: start it with a metastore (DATABASE_URL) and STRATA_LAKE_ROOT',
        503,
      );
    return forTenant(ctx.lake, tenant).store;
  };
  const checkName = (name: string) => {
    if (!LIBRARY_NAME_RE.test(name))
      throw new RequestError('name must start with a letter and hold letters, digits, "_" and "-" (at most 64)', 400);
  };
  const checkVersion = (version: string) => {
    if (!LIBRARY_VERSION_RE.test(version) || version === 'versions')
      throw new RequestError('version must be letters, digits, ".", "_" and "-" (at most 64), e.g. 3 or 1.2.0', 400);
  };
  const lockKey = (tenant: string, name: string, version: string) => `library/${tenant}/${name}/${version}`;

  // Archives arrive as bytes; only these routes accept them.
  void app.register(async (sub) => {
    sub.addContentTypeParser(
      [...Object.keys(KIND_OF), 'application/octet-stream'],
      { parseAs: 'buffer' },
      (_req, body, done) => done(null, body),
    );

    sub.post<{ Querystring: { name?: string; version?: string; file?: string } }>(
      '/api/v1/libraries',
      {
        schema: {
          tags: ['libraries'],
          summary:
            `Upload a UDF library version (at most ${fmtBytes(LIMITS.libraryBytes)}): ` +
            `the raw JAR as application/java-archive, or a Python wheel/zip as application/zip; ?name=&version=[&file=], ` +
            `the functions it declares in the ${FUNCTIONS_HEADER} header (JSON [{name, class, returnType}]); ` +
            `the same bytes again are a no-op`,
        },
      },
      async (req, reply) => {
        const p = need(req, 'admin');
        const type = String(req.headers['content-type'] ?? '')
          .split(';')[0]
          .trim()
          .toLowerCase();
        const kind = KIND_OF[type];
        if (!kind || !Buffer.isBuffer(req.body))
          throw new RequestError(
            `send the library's bytes as the body with content-type application/java-archive (a JAR), application/zip (a Python wheel or zip) or application/sql (DuckDB CREATE MACRO statements), not ${type || '(none)'}`,
            415,
          );
        const body = req.body;
        const { name, version } = req.query;
        if (!name) throw new RequestError('missing query parameter name: ?name=udfs&version=1', 400);
        if (!version) throw new RequestError('missing query parameter version: ?name=udfs&version=1', 400);
        checkName(name);
        checkVersion(version);
        const file = req.query.file ?? `${name}-${version}${DEFAULT_EXT[kind]}`;
        if (!FILE_RE.test(file) || !EXT[kind].test(file))
          throw new RequestError(
            `file must be a plain file name ending ${{ jar: '.jar', python: '.whl, .zip or .egg', duckdb: '.sql' }[kind]} (letters, digits, ".", "_", "+", "-")`,
            400,
          );
        let functions: LibraryFunction[];
        if (kind === 'duckdb') functions = await macroFunctions(req, body);
        else {
          if (!isZip(body))
            throw new RequestError(
              `the body is not a ${kind === 'jar' ? 'JAR' : 'wheel or zip'} (a zip archive): send the file's bytes as they are`,
              400,
            );
          functions = declaredFunctions(req, kind);
          const absent = missingClass(body, kind, functions);
          if (absent)
            throw new RequestError(
              `function ${absent.name}: ${kind === 'jar' ? `class ${absent.class} is not in the JAR` : `module of ${absent.class} is not in the package`}: correct the class or upload the right file`,
              400,
            );
        }
        const sha256 = createHash('sha256').update(body).digest('hex');
        const store = lakeOf(p.tenant);
        const res = await ctx.db.tx(async (t) => {
          if (t.kind === 'postgres')
            await t.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey(p.tenant, name, version)]);
          const have = await getLibraryVersion(t, p.tenant, name, version);
          if (have) {
            const same =
              have.sha256 === sha256 &&
              have.file === file &&
              have.kind === kind &&
              sameFunctions(have.functions, functions);
            if (!same)
              throw new RequestError(
                `library ${name} version ${version} already exists with other content (sha256 ${have.sha256.slice(0, 12)}…, ${have.functions.length} function(s)): a version never changes; upload this one as a new version`,
                409,
              );
            return { created: false, v: have };
          }
          await store.putBytes(libraryKey(name, version, file), body);
          const v = { name, version, kind, file, sha256, sizeBytes: body.length, functions };
          await insertLibraryVersion(t, p.tenant, v, p.keyId);
          return { created: true, v: (await getLibraryVersion(t, p.tenant, name, version))! };
        });
        return reply
          .status(res.created ? 201 : 200)
          .send({ ...view(res.v), uri: store.uri(libraryKey(name, version, file)), created: res.created });
      },
    );
  });

  app.get(
    '/api/v1/libraries',
    { schema: { tags: ['libraries'], summary: "The tenant's libraries, each with its newest version" } },
    async (req) => {
      const p = need(req, 'viewer');
      const all = await listLibraryVersions(ctx.db, p.tenant);
      const byName = new Map<string, LibraryVersion[]>();
      for (const v of all) byName.set(v.name, [...(byName.get(v.name) ?? []), v]);
      return { data: [...byName].map(([name, vs]) => ({ name, versions: vs.length, latest: view(vs[0]) })) };
    },
  );

  const versionsOf = async (tenant: string, name: string) => {
    checkName(name);
    const vs = await listLibraryVersions(ctx.db, tenant, name);
    if (!vs.length) throw new RequestError(`no library ${name}: upload it with POST /api/v1/libraries`, 404);
    return vs;
  };

  app.get<{ Params: { name: string } }>(
    '/api/v1/libraries/:name',
    { schema: { tags: ['libraries'], summary: 'A library: its newest version and how many it has' } },
    async (req) => {
      const p = need(req, 'viewer');
      const vs = await versionsOf(p.tenant, req.params.name);
      return { name: req.params.name, versions: vs.length, latest: view(vs[0]) };
    },
  );

  app.get<{ Params: { name: string } }>(
    '/api/v1/libraries/:name/versions',
    { schema: { tags: ['libraries'], summary: 'Every version of a library, newest first' } },
    async (req) => {
      const p = need(req, 'viewer');
      return { data: (await versionsOf(p.tenant, req.params.name)).map(view) };
    },
  );

  app.get<{ Params: { name: string; version: string } }>(
    '/api/v1/libraries/:name/:version',
    { schema: { tags: ['libraries'], summary: 'One version of a library' } },
    async (req) => {
      const p = need(req, 'viewer');
      checkName(req.params.name);
      const v = await getLibraryVersion(ctx.db, p.tenant, req.params.name, req.params.version);
      if (!v) throw new RequestError(`library ${req.params.name} has no version ${req.params.version}`, 404);
      return view(v);
    },
  );

  app.delete<{ Params: { name: string; version: string } }>(
    '/api/v1/libraries/:name/:version',
    {
      schema: {
        tags: ['libraries'],
        summary: "Delete a library version (refused while a pipeline's current version pins it)",
      },
    },
    async (req, reply) => {
      const p = need(req, 'admin');
      const { name, version } = req.params;
      checkName(name);
      const store = lakeOf(p.tenant);
      await ctx.db.tx(async (t) => {
        if (t.kind === 'postgres')
          await t.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey(p.tenant, name, version)]);
        const v = await getLibraryVersion(t, p.tenant, name, version);
        if (!v) throw new RequestError(`library ${name} has no version ${version}`, 404);
        const pins = await pipelinesPinning(t, p.tenant, name, version);
        if (pins.length)
          throw new RequestError(
            `library ${name} version ${version} is pinned by pipeline(s) ${pins.slice(0, 20).join(', ')}: register versions of them that use another version (or none) first`,
            409,
          );
        await deleteLibraryVersion(t, p.tenant, name, version);
        await store.delete([libraryKey(name, version, v.file)]);
      });
      return reply.status(204).send();
    },
  );
}
