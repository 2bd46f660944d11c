/**
 * Parameters are values: typed at declaration, checked at trigger time, and in SQL only
 * through the `literal` / `ident` filters, quoted for the engine. Injection attempts run
 * end to end through real runs on DuckDB, Postgres and MariaDB.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import type mysql from 'mysql2/promise';
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { RequestError } from '../../schemas/errors.js';
import { loadConfig } from '../../schemas/config.js';
import { PARAM_LIMITS, resolveParams, validateSpec, type PipelineSpec, type Problem } from '../../schemas/pipeline.js';
import {
  SQL_TEXT_DIALECTS,
  filterSiteProblem,
  nonCodeReadings,
  sqlIdent,
  sqlLiteral,
  sqlString,
  SqlTextError,
} from '../../schemas/sql-text.js';
import { renderField, renderTask } from '../../schemas/template.js';
import { paramDecls } from '../../schemas/params.js';
import { sqlDialectAt } from '../../schemas/kinds.js';
import type { RunState } from '../../schemas/run.js';
import { registerPipeline } from '../../store/pipelines.js';
import { runCli } from '../harness/processes.js';
import { spec } from '../harness/specs.js';
import { connectWarehouses, type Warehouses } from '../harness/databases.js';
import { testStack, type TestStack } from '../harness/temporal.js';

function problemsOf(input: unknown): Problem[] {
  const r = validateSpec(input);
  if (r.ok) throw new Error(`expected problems, the spec is valid: ${JSON.stringify(input)}`);
  return r.problems;
}
const pipeline = (tasks: object[], params: object = {}) => ({ id: 'p', params, tasks });

const RAW_FIX =
  /^params\.x is a run value and is never pasted into SQL: write \{\{ params\.x \| literal \}\} for a value, or \{\{ params\.x \| ident \}\} for a table or column name$/;

describe('declarations', () => {
  const decls = (params: object) => {
    const r = validateSpec(pipeline([{ id: 'a', kind: 'noop' }], params));
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    return paramDecls(r.spec.params);
  };

  it('keeps the short forms as typed declarations', () => {
    expect(
      decls({
        region: 'eu',
        n: 3,
        dry: false,
        day: { description: 'no default' },
        env: { default: 'prod' },
        tier: { values: ['a', 'b'] },
      }),
    ).toEqual({
      region: { type: 'string', default: 'eu' },
      n: { type: 'number', default: 3 },
      dry: { type: 'boolean', default: false },
      day: { type: 'string', description: 'no default' },
      env: { type: 'string', default: 'prod' },
      tier: { type: 'enum', values: ['a', 'b'] },
    });
  });

  it.each([
    [{ type: 'integer', default: 1.5 }, /the default does not fit: param "default" takes a whole number/],
    [{ type: 'integer', min: 5, max: 1 }, /"min" \(5\) is above "max" \(1\)/],
    [{ type: 'integer', maxLength: 3 }, /"maxLength" applies to string params, not integer/],
    [{ type: 'enum' }, /an enum param needs "values"/],
    [{ type: 'date', min: '2026-02-30' }, /"min" of a date param is a date written YYYY-MM-DD/],
    [{ type: 'string', pattern: '([a-z]+)+' }, /exponential time/],
    [{ type: 'string', pattern: '(' }, /not a valid regular expression/],
    [{ type: 'string', maxLength: PARAM_LIMITS.valueLength + 1 }, /less than or equal to 1024|1024/],
    [{ type: 'text' }, /string.*integer.*enum/],
    [{ type: 'boolean', default: 'yes' }, /takes true or false/],
  ])('refuses the declaration %j', (def, message) => {
    const ps = problemsOf(pipeline([{ id: 'a', kind: 'noop' }], { x: def }));
    expect(
      ps.some((p) => p.path.startsWith('params.x') && message.test(p.message)),
      JSON.stringify(ps),
    ).toBe(true);
  });

  it('caps how many params a spec declares', () => {
    const many = Object.fromEntries(Array.from({ length: PARAM_LIMITS.count + 1 }, (_, i) => [`p${i}`, 'v']));
    expect(problemsOf(pipeline([{ id: 'a', kind: 'noop' }], many))).toEqual([
      { path: 'params', message: `declare at most ${PARAM_LIMITS.count} params` },
    ]);
  });
});

describe('validation: params in SQL fields only through filters', () => {
  const P = { x: 'v' };
  const cases: [string, object, string][] = [
    ['sql on duckdb', { id: 'a', kind: 'sql', sql: 'SELECT {{ params.x }}' }, 'tasks[0].sql'],
    [
      'sql on postgres',
      { id: 'a', kind: 'sql', engine: 'postgres', connection: 'w', sql: 'SELECT {{ params.x }}' },
      'tasks[0].sql',
    ],
    [
      'sql on mysql',
      { id: 'a', kind: 'sql', engine: 'mysql', connection: 'm', sql: "SELECT '{{ params.x }}'" },
      'tasks[0].sql',
    ],
    ['sql on spark', { id: 'a', kind: 'sql', engine: 'spark', sql: 'SELECT {{ params.x }}' }, 'tasks[0].sql'],
    [
      'sql on emr (hive)',
      { id: 'a', kind: 'sql', engine: 'emr', clusterId: 'j-ABC', dialect: 'hive', sql: 'SELECT {{ params.x }}' },
      'tasks[0].sql',
    ],
    [
      'ingest.table query',
      {
        id: 'a',
        kind: 'ingest.table',
        connection: 'w',
        query: 'SELECT * FROM t WHERE k = {{ params.x }}',
        output: 'bronze.t',
      },
      'tasks[0].query',
    ],
    ['hive query', { id: 'a', kind: 'hive', clusterId: 'j-ABC', query: 'SELECT {{ params.x }}' }, 'tasks[0].query'],
    [
      'a check on a sql output',
      { id: 'a', kind: 'sql', sql: 'SELECT 1 AS n', output: 'silver.t', checks: [{ expect: 'n > {{ params.x }}' }] },
      'tasks[0].checks[0].expect',
    ],
    [
      'a check on ingest.file',
      {
        id: 'a',
        kind: 'ingest.file',
        source: 'l/',
        format: 'csv',
        columns: { n: 'int' },
        output: 'bronze.t',
        checks: [{ expect: 'n > {{ params.x }}' }],
      },
      'tasks[0].checks[0].expect',
    ],
    [
      'a check on ingest.table',
      {
        id: 'a',
        kind: 'ingest.table',
        connection: 'w',
        table: 't',
        output: 'bronze.t',
        checks: [{ expect: 'n > {{ params.x }}' }],
      },
      'tasks[0].checks[0].expect',
    ],
  ];
  it.each(cases)('refuses a raw param in %s, saying what to write', (_what, task, path) => {
    expect(problemsOf(pipeline([task], P))).toEqual([{ path, message: expect.stringMatching(RAW_FIX) }]);
  });

  it('accepts filters in SQL fields and raw params elsewhere (paths, names, descriptions)', () => {
    const r = validateSpec(
      pipeline(
        [
          {
            id: 'a',
            kind: 'sql',
            sql: 'SELECT {{ params.x | literal }} AS v FROM {{ params.x | ident }}',
            output: 'out/{{ params.x }}.parquet',
            description: 'for {{ params.x }}',
          },
          {
            id: 'b',
            kind: 'ingest.table',
            connection: 'w',
            query: 'SELECT * FROM t WHERE k = {{ params.x | literal }}',
            output: 'bronze.t',
          },
          { id: 'c', kind: 's3.wait', path: 'landing/{{ params.x }}/' },
        ],
        P,
      ),
    );
    expect(r.ok, JSON.stringify(r)).toBe(true);
  });

  it('keeps built-in variables usable raw in SQL (inside the author’s quotes)', () => {
    expect(
      validateSpec(pipeline([{ id: 'a', kind: 'sql', sql: "SELECT DATE '{{ ds }}', '{{ run_id }}', '{{ tenant }}'" }]))
        .ok,
    ).toBe(true);
  });

  it.each([
    [
      "SELECT '{{ params.x | literal }}'",
      /inside a quoted string, quoted name or comment; .*remove the quotes around it/,
    ],
    ['SELECT "{{ params.x | ident }}"', /inside a quoted string/],
    ['SELECT 1 -- {{ params.x | literal }}', /inside a quoted string, quoted name or comment/],
    ['SELECT 1 /* {{ params.x | literal }} */', /comment/],
    ['SELECT $$ {{ params.x | literal }} $$', /inside a quoted string/, 'postgres'],
    ['SELECT E{{ params.x | literal }}', /touches the text around it/],
    ['SELECT N{{ params.x | literal }}', /touches the text around it/],
    ["SELECT {{ params.x | literal }}'a'", /touches the text around it/],
    // A backslash before the quote: MySQL reads the string as still open.
    ["SELECT 'a\\' , {{ params.x | literal }}, 'b'", /inside a quoted string/],
  ])('refuses a filter where its quotes would not be the only ones: %j', (sql, message, engine = 'mysql') => {
    const ps = problemsOf(pipeline([{ id: 'a', kind: 'sql', engine, connection: 'm', sql }], P));
    expect(
      ps.some((p) => p.path === 'tasks[0].sql' && message.test(p.message)),
      JSON.stringify(ps),
    ).toBe(true);
  });

  it('refuses filters outside SQL fields and ident on numbers', () => {
    const ps = problemsOf(
      pipeline(
        [
          {
            id: 'a',
            kind: 'sql',
            sql: 'SELECT {{ params.n | ident }}',
            output: 'out/{{ params.x | literal }}.parquet',
          },
        ],
        { x: 'v', n: 3 },
      ),
    );
    expect(ps).toEqual([
      {
        path: 'tasks[0].sql',
        message:
          '{{ params.n | ident }}: ident quotes a name, and params.n is a number: write {{ params.n | literal }}',
      },
      {
        path: 'tasks[0].output',
        message:
          '{{ params.x | literal }}: filters quote values for SQL, and this field is not SQL: write {{ params.x }}',
      },
    ]);
  });
});

describe('trigger time: values are checked against their declarations', () => {
  const s = spec({
    id: 'typed',
    params: {
      n: { type: 'integer', min: 1, max: 100 },
      amount: { type: 'number', default: 0 },
      on: { type: 'boolean', default: true },
      day: { type: 'date', min: '2020-01-01', default: '2026-01-01' },
      region: { type: 'enum', values: ['eu', 'us'], default: 'eu' },
      code: { type: 'string', maxLength: 8, pattern: '[A-Z0-9]+', default: 'A1' },
      note: { default: 'free text' },
    },
    tasks: [
      {
        id: 'a',
        kind: 'sql',
        sql: 'SELECT {{ params.n | literal }}, {{ params.amount | literal }}, {{ params.on | literal }}, {{ params.day | literal }}, {{ params.region | literal }}, {{ params.code | literal }}, {{ params.note | literal }}',
      },
    ],
  });

  it('puts good values in canonical form', () => {
    expect(
      resolveParams(s, { n: '7', amount: '2.50', on: 'false', day: '2026-03-04', region: 'us', code: 'XY9' }),
    ).toEqual({
      params: { n: '7', amount: '2.5', on: 'false', day: '2026-03-04', region: 'us', code: 'XY9', note: 'free text' },
      problems: [],
    });
    expect(resolveParams(s, { n: 7, amount: -1e-3, on: false }).params).toMatchObject({
      n: '7',
      amount: '-0.001',
      on: 'false',
    });
  });

  it.each([
    ['n', '1 OR 1=1', 'param "n" takes a whole number from 1 to 100: "1 OR 1=1" does not fit'],
    ['n', '0', 'param "n" takes a whole number from 1 to 100: "0" does not fit'],
    ['n', '2.5', 'param "n" takes a whole number from 1 to 100: "2.5" does not fit'],
    ['amount', '1; DROP TABLE t', 'param "amount" takes a number: "1; DROP TABLE t" does not fit'],
    ['amount', 'Infinity', 'param "amount" takes a number: "Infinity" does not fit'],
    ['on', 'yes', 'param "on" takes true or false: "yes" does not fit'],
    [
      'day',
      "2026-01-01' OR '1'='1",
      `param "day" takes a date written YYYY-MM-DD of at least 2020-01-01: "2026-01-01' OR '1'='1" does not fit`,
    ],
    [
      'day',
      '2019-12-31',
      'param "day" takes a date written YYYY-MM-DD of at least 2020-01-01: "2019-12-31" does not fit',
    ],
    [
      'day',
      '2026-02-30',
      'param "day" takes a date written YYYY-MM-DD of at least 2020-01-01: "2026-02-30" does not fit',
    ],
    ['region', "eu' --", `param "region" takes one of eu, us: "eu' --" does not fit`],
    [
      'code',
      'abc',
      'param "code" takes text of at most 8 characters without control characters, matching [A-Z0-9]+: "abc" does not fit',
    ],
    [
      'code',
      'ABCDEFGHI',
      'param "code" takes text of at most 8 characters without control characters, matching [A-Z0-9]+ (too long): "ABCDEFGHI" does not fit',
    ],
    [
      'note',
      'a\nb',
      'param "note" takes text of at most 1024 characters without control characters (control characters are not allowed): "a\\nb" does not fit',
    ],
    [
      'note',
      'a\u0000b',
      'param "note" takes text of at most 1024 characters without control characters (control characters are not allowed): "a\\u0000b" does not fit',
    ],
    ['note', 'x'.repeat(PARAM_LIMITS.valueLength + 1), expect.stringContaining('(too long)')],
  ])('refuses %s = %j, naming the param and what fits', (name, value, message) => {
    const r = resolveParams(s, { n: '5', [name]: value });
    expect(r.problems).toEqual([{ path: `params.${name}`, message }]);
  });

  it('caps the size of all values together and the number given', () => {
    const many = spec({
      id: 'm',
      params: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`p${i}`, ''])),
      tasks: [{ id: 'a', kind: 'noop' }],
    });
    const big = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`p${i}`, 'x'.repeat(1000)]));
    expect(resolveParams(many, big).problems).toEqual([
      {
        path: 'params',
        message: `the values hold 20000 characters together: a run takes at most ${PARAM_LIMITS.totalLength}`,
      },
    ]);
    const lots = Object.fromEntries(Array.from({ length: PARAM_LIMITS.count + 1 }, (_, i) => [`q${i}`, '1']));
    expect(resolveParams(many, lots).problems).toEqual([
      { path: 'params', message: `${PARAM_LIMITS.count + 1} params given: a run takes at most ${PARAM_LIMITS.count}` },
    ]);
  });

  it('refuses a value an ingest.table query cannot quote the same on Postgres and MySQL', () => {
    const t = spec({
      id: 'i',
      params: { k: 'x', col: 'c' },
      tasks: [
        {
          id: 'a',
          kind: 'ingest.table',
          connection: 'w',
          query: 'SELECT {{ params.col | ident }} FROM t WHERE k = {{ params.k | literal }}',
          output: 'bronze.t',
        },
      ],
    });
    expect(resolveParams(t, { k: 'a\\b' }).problems).toEqual([
      {
        path: 'tasks[0].query',
        message: expect.stringMatching(/^params\.k holds a backslash, which Postgres and MySQL read differently/),
      },
    ]);
    expect(resolveParams(t, { col: 'a b' }).problems).toEqual([
      { path: 'tasks[0].query', message: expect.stringMatching(/^params\.col is not a plain name/) },
    ]);
    expect(resolveParams(t, { k: "it's" }).problems).toEqual([]);
  });

  it('refuses to run a spec stored before params were typed, saying how to fix it', () => {
    const legacy = {
      ...s,
      params: { x: 'v' },
      tasks: [{ id: 'a', kind: 'sql', needs: [], sql: "SELECT '{{ params.x }}'" }],
    } as PipelineSpec;
    expect(resolveParams(legacy, {}).problems).toEqual([
      {
        path: 'tasks[0].sql',
        message:
          'this version of the spec pastes params.x into SQL (it was registered before params were typed): register a new version that writes {{ params.x | literal }} or {{ params.x | ident }}',
      },
    ]);
  });
});

describe('rendering for each engine', () => {
  const evil = "\\'; DROP TABLE t; --";
  it('quotes string literals so each engine reads back the value', () => {
    expect(sqlString("x' OR '1'='1", 'duckdb')).toBe("'x'' OR ''1''=''1'");
    expect(sqlString(evil, 'duckdb')).toBe("E'\\\\''; DROP TABLE t; --'");
    expect(sqlString(evil, 'postgres')).toBe("E'\\\\''; DROP TABLE t; --'");
    expect(sqlString(evil, 'mysql')).toBe("'\\\\''; DROP TABLE t; --'");
    expect(sqlString(evil, 'spark')).toBe("'\\\\\\'; DROP TABLE t; --'");
    expect(sqlString(evil, 'hive')).toBe("'\\\\\\'; DROP TABLE t; --'");
    expect(sqlString("a'b", 'presto')).toBe("'a''b'");
  });

  it('quotes identifiers per engine', () => {
    expect(sqlIdent('we"ird', 'postgres')).toBe('"we""ird"');
    expect(sqlIdent('we`ird', 'mysql')).toBe('`we``ird`');
    expect(sqlIdent('we`ird', 'spark')).toBe('`we``ird`');
    expect(() => sqlIdent('a"b', 'portable')).toThrow(/not a plain name/);
  });

  it('renders numbers as digits (negative ones in parentheses, so `x -{{ n }}` is no comment), booleans and dates as keywords', () => {
    expect(sqlLiteral('-5', 'integer', 'mysql')).toBe('(-5)');
    expect(sqlLiteral('2.5', 'number', 'duckdb')).toBe('2.5');
    expect(sqlLiteral('1e+21', 'number', 'postgres')).toBe('1e+21');
    expect(() => sqlLiteral('1 OR 1=1', 'integer', 'postgres')).toThrow(/not a number/);
    expect(sqlLiteral('true', 'boolean', 'hive')).toBe('TRUE');
    expect(sqlLiteral('2026-01-02', 'date', 'presto')).toBe("DATE '2026-01-02'");
  });

  it('reads the filter’s surroundings as every engine setting may (NO_BACKSLASH_ESCAPES, standard_conforming_strings)', () => {
    // Postgres with standard_conforming_strings on: 'a\' is closed; off: it is open. Both readings must agree.
    const sql = "SELECT 'a\\', {{ params.x | literal }}";
    expect(filterSiteProblem(sql, sql.indexOf('{{'), sql.length, 'postgres')).toMatch(/inside a quoted string/);
    expect(filterSiteProblem(sql, sql.indexOf('{{'), sql.length, 'presto')).toBeUndefined();
    const ok = "SELECT 'it''s', {{ params.x | literal }} # note";
    expect(filterSiteProblem(ok, ok.indexOf('{{'), ok.indexOf('}}') + 2, 'mysql')).toBeUndefined();
  });

  it('never lets a value change how the rest of the statement is read, whatever the text around an accepted filter (10,000 random cases per engine)', () => {
    // A seeded generator: the same cases every run.
    let seed = 42;
    const rnd = (n: number) => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    const pick = <T>(xs: readonly T[]) => xs[rnd(xs.length)];
    const FRAG = [
      "'a'",
      "'",
      '"',
      '`',
      '\\',
      '--',
      '#',
      '/*',
      '*/',
      '$$',
      '$a$',
      'E',
      'N',
      '\n',
      ' ',
      'x',
      ';',
      "''",
      '(',
      ')',
      '=',
      '-',
    ];
    const CHARS = ["'", '"', '\\', '`', '$', '*', '/', '-', '#', 'a', ' ', ';', 'E', '\n'];
    let accepted = 0;
    let escaped = 0;
    for (const dialect of SQL_TEXT_DIALECTS) {
      for (let n = 0; n < 10_000; n++) {
        const prefix = Array.from({ length: rnd(6) }, () => pick(FRAG)).join('');
        const suffix = Array.from({ length: rnd(6) }, () => pick(FRAG)).join('');
        const filter = rnd(2) ? 'literal' : 'ident';
        const use = `{{ params.x | ${filter} }}`;
        const template = prefix + use + suffix;
        if (filterSiteProblem(template, prefix.length, prefix.length + use.length, dialect)) continue;
        const value = Array.from({ length: 1 + rnd(6) }, () => pick(CHARS)).join('');
        let token: string;
        try {
          token = filter === 'literal' ? sqlString(value, dialect) : sqlIdent(value, dialect);
        } catch (e) {
          if (e instanceof SqlTextError) continue; // refused (portable backslash or non-plain name)
          throw e;
        }
        accepted++;
        if (token.startsWith("E'")) escaped++;
        const start = prefix.length;
        const end = start + token.length;
        const rendered = prefix + token + suffix;
        const neutral = prefix + '0'.repeat(token.length) + suffix;
        // The token is one quoted stretch (after its E prefix, if any), or a bare name.
        const open = token.startsWith("E'") ? start + 1 : start;
        const quoted = /^E?['"`]/.test(token);
        const got = nonCodeReadings(rendered, dialect);
        const want = nonCodeReadings(neutral, dialect).map((spans) =>
          quoted ? [...spans, [open, end]].sort((a, b) => a[0] - b[0]) : spans,
        );
        expect(
          got,
          `${dialect}: ${JSON.stringify(template)} with ${JSON.stringify(value)} -> ${JSON.stringify(rendered)}`,
        ).toEqual(want);
      }
    }
    expect(accepted).toBeGreaterThan(10_000);
    expect(escaped).toBeGreaterThan(200);
  });

  it('renders a task by field: SQL fields get the engine’s quoting, others the plain value', () => {
    const task = {
      id: 'a',
      kind: 'sql',
      engine: 'mysql',
      connection: 'm',
      sql: 'SELECT * FROM {{ params.t | ident }} WHERE k = {{ params.k | literal }}',
      description: '{{ params.k }}',
    };
    const decls = paramDecls({ t: 'x', k: 'x' });
    const out = renderTask(task, { 'params.t': 'my`t', 'params.k': "it's" }, decls, (p) => sqlDialectAt(task, p));
    expect(out).toMatchObject({ sql: "SELECT * FROM `my``t` WHERE k = 'it''s'", description: "it's" });
  });

  it('holds a value to its type again when rendering, so a run started around the API cannot smuggle SQL', () => {
    const decls = paramDecls({ n: { type: 'integer' } });
    expect(() =>
      renderField('SELECT {{ params.n | literal }}', { 'params.n': '1 OR 1=1' }, { sql: 'duckdb', params: decls }),
    ).toThrow('param "n" takes a whole number: "1 OR 1=1" does not fit');
  });

  it('lets built-ins stand raw in SQL only when they cannot carry any', () => {
    const ctx = { sql: 'postgres' as const, params: {} };
    expect(renderField("SELECT '{{ tenant }}', '{{ ds }}'", { tenant: 'acme', ds: '2026-01-02' }, ctx)).toBe(
      "SELECT 'acme', '2026-01-02'",
    );
    expect(() => renderField("SELECT '{{ tenant }}'", { tenant: "x' OR 1=1 --" }, ctx)).toThrow(
      /tenant is "x' OR 1=1 --", which may not stand raw in SQL/,
    );
    expect(() => renderField('SELECT 1 -{{ run_id }}', { run_id: '-1' }, ctx)).toThrow(/may not stand raw in SQL/);
  });
});

// ---------------------------------------------------------------------------------------
// End to end: real runs on real engines.

const PAYLOADS = [
  "x' OR '1'='1",
  "'; DROP TABLE {T}; --",
  "\\'; DROP TABLE {T}; --",
  'x\\',
  "\\\\'' OR 1=1 -- ",
  '*/ DROP TABLE {T}; /*',
  '"; DROP TABLE {T}; --',
  '`; DROP TABLE {T}; --',
];

let stack: TestStack;
let pgc: pg.Client;
let my: mysql.Connection;
let wh: Warehouses;
const sfx = randomBytes(3).toString('hex');
const T = `people_${sfx}`;
const payloads = PAYLOADS.map((p) => p.replaceAll('{T}', T));

beforeAll(async () => {
  stack = await testStack('params');
  wh = await connectWarehouses(stack.connections);
  ({ pg: pgc, mysql: my } = wh);
});
afterAll(async () => {
  await wh?.close();
  await stack?.close();
});

const runWith = (s: PipelineSpec, params: Record<string, string>): Promise<RunState> =>
  stack.withWorker(() => stack.runToEnd(s, { params }));

/** One task per payload selecting the rows whose name equals it, plus ident and number probes. */
function injectionSpec(id: string, engine: 'duckdb' | 'postgres' | 'mysql', from: string, ident: string): PipelineSpec {
  const conn = engine === 'duckdb' ? {} : { engine, connection: engine === 'postgres' ? 'warehouse' : 'mart' };
  return spec({
    id,
    params: {
      ...Object.fromEntries(payloads.map((_, i) => [`p${i}`, ''])),
      tbl: { type: 'string', default: 'x' },
      evil_tbl: { type: 'string', default: 'x' },
      neg: { type: 'integer', default: 0 },
    },
    tasks: [
      ...payloads.map((_, i) => ({
        id: `p${i}`,
        kind: 'sql',
        ...conn,
        sql: `SELECT * FROM ${from} WHERE name = {{ params.p${i} | literal }}`,
      })),
      { id: 'ident', kind: 'sql', ...conn, sql: `${ident}SELECT * FROM {{ params.tbl | ident }}` },
      { id: 'evil_ident', kind: 'sql', ...conn, sql: 'SELECT * FROM {{ params.evil_tbl | ident }}' },
      // Unparenthesised, -(-1) would read `id > 0 --1 AND id < 0`: the comment would drop the last condition.
      {
        id: 'neg',
        kind: 'sql',
        ...conn,
        sql: `SELECT * FROM ${from} WHERE id > 0 -{{ params.neg | literal }} AND id < 0`,
      },
    ],
  });
}

const values = (extra: Record<string, string>) => ({
  ...Object.fromEntries(payloads.map((p, i) => [`p${i}`, p])),
  neg: '-1',
  ...extra,
});

function expectValuesNotCode(st: RunState) {
  for (let i = 0; i < payloads.length; i++)
    expect(st.tasks[`p${i}`], `${st.tasks[`p${i}`]?.error} ` + `payload ${payloads[i]}`).toMatchObject({
      status: 'success',
      output: expect.objectContaining({ rowCount: 1 }),
    });
  expect(st.tasks.ident).toMatchObject({ status: 'success', output: expect.objectContaining({ rowCount: 2 }) });
  expect(st.tasks.evil_ident).toMatchObject({ status: 'failed', errorType: 'SqlError' });
  expect(st.tasks.neg).toMatchObject({ status: 'success', output: expect.objectContaining({ rowCount: 0 }) });
}

describe('injection attempts, end to end', () => {
  it('postgres: string payloads are values, identifiers stay names, the table is untouched', async () => {
    const weird = `we"ird;${sfx}`;
    await pgc.query(`DROP TABLE IF EXISTS ${T}; CREATE TABLE ${T} (id int primary key, name text)`);
    for (const [i, p] of payloads.entries()) await pgc.query(`INSERT INTO ${T} VALUES ($1, $2)`, [i + 1, p]);
    await pgc.query(`CREATE TABLE "${weird.replaceAll('"', '""')}" AS SELECT 1 AS a UNION ALL SELECT 2`);
    const st = await runWith(
      injectionSpec('inj_pg', 'postgres', T, ''),
      values({ tbl: weird, evil_tbl: `${T}"; DROP TABLE ${T}; --` }),
    );
    expectValuesNotCode(st);
    expect(st.tasks.evil_ident.error).toMatch(/does not exist/);
    const rows = await pgc.query(`SELECT name FROM ${T} ORDER BY id`);
    expect(rows.rows.map((r) => r.name)).toEqual(payloads);
  });

  it('a run started around the API (straight on Temporal) is held to the same types and built-in rules', async () => {
    await pgc.query(
      `DROP TABLE IF EXISTS keep_${sfx}; CREATE TABLE keep_${sfx} (id int); INSERT INTO keep_${sfx} VALUES (1), (2)`,
    );
    const s = spec({
      id: 'around',
      params: { n: { type: 'integer' } },
      tasks: [
        {
          id: 'typed',
          kind: 'sql',
          engine: 'postgres',
          connection: 'warehouse',
          sql: `SELECT * FROM keep_${sfx} WHERE id > {{ params.n | literal }}`,
        },
        { id: 'builtin', kind: 'sql', engine: 'postgres', connection: 'warehouse', sql: "SELECT '{{ tenant }}'" },
      ],
    });
    const workflowId = `pipeline/${stack.tenant}/around/direct-${sfx}`;
    const st = await stack.withWorker(async () => {
      await stack.client.workflow.start('pipelineRun', {
        taskQueue: stack.taskQueue,
        workflowId,
        args: [
          {
            spec: s,
            tenant: `x'; DROP TABLE keep_${sfx}; --`,
            trigger: 'manual',
            params: { n: `0; DROP TABLE keep_${sfx}` },
          },
        ],
      });
      return stack.runs.wait(workflowId);
    });
    expect(st.tasks.typed).toMatchObject({
      status: 'failed',
      errorType: 'TemplateError',
      error: `typed: param "n" takes a whole number: "0; DROP TABLE keep_${sfx}" does not fit`,
    });
    expect(st.tasks.builtin).toMatchObject({
      status: 'failed',
      errorType: 'TemplateError',
      error: expect.stringContaining('may not stand raw in SQL'),
    });
    expect((await pgc.query(`SELECT count(*)::int AS n FROM keep_${sfx}`)).rows[0].n).toBe(2);
  });

  it('mariadb: the backslash trick stays inside the literal; backticks stay inside the name', async () => {
    const weird = `we\`ird;${sfx}`;
    await my.query(`DROP TABLE IF EXISTS ${T}`);
    await my.query(`CREATE TABLE ${T} (id int primary key, name text)`);
    for (const [i, p] of payloads.entries()) await my.query(`INSERT INTO ${T} VALUES (?, ?)`, [i + 1, p]);
    await my.query(`CREATE TABLE \`${weird.replaceAll('`', '``')}\` AS SELECT 1 AS a UNION ALL SELECT 2`);
    const st = await runWith(
      injectionSpec('inj_my', 'mysql', T, ''),
      values({ tbl: weird, evil_tbl: `${T}\`; DROP TABLE ${T}; --` }),
    );
    expectValuesNotCode(st);
    expect(st.tasks.evil_ident.error).toMatch(/doesn't exist/);
    const [rows] = (await my.query(`SELECT name FROM ${T} ORDER BY id`)) as [{ name: string }[], unknown];
    expect(rows.map((r) => r.name)).toEqual(payloads);
  });

  it('duckdb: payloads select their own row, write nothing else, and read back unchanged', async () => {
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    await c.run('CREATE TABLE people (id INTEGER, name VARCHAR)');
    for (const [i, p] of payloads.entries()) await c.run('INSERT INTO people VALUES ($1, $2)', [i + 1, p]);
    await c.run(`COPY people TO '${path.join(stack.tenantRoot, 'people.parquet')}' (FORMAT parquet)`);
    const weird = `we"ird;${sfx}`;
    const make = `CREATE TABLE "${weird.replaceAll('"', '""')}" AS SELECT 1 AS a UNION ALL SELECT 2; `;
    const s = injectionSpec('inj_duck', 'duckdb', "read_parquet('people.parquet')", make);
    // One payload also goes through an output file, to read back the value as the engine saw it.
    s.tasks.push({
      ...s.tasks[2],
      id: 'echo',
      output: 'echo.parquet',
      sql: 'SELECT {{ params.p2 | literal }} AS v, {{ params.p3 | literal }} AS w',
    });
    const st = await runWith(s, values({ tbl: weird, evil_tbl: `people"; COPY (SELECT 1) TO 'pwned.csv'; --` }));
    expectValuesNotCode(st);
    expect(st.tasks.evil_ident.error).toMatch(/Catalog Error/);
    expect(st.tasks.echo.status).toBe('success');
    const echo = (
      await c.runAndReadAll(`SELECT v, w FROM read_parquet('${path.join(stack.tenantRoot, 'echo.parquet')}')`)
    ).getRows();
    expect(echo).toEqual([[payloads[2], payloads[3]]]);
    expect(await readdir(stack.tenantRoot)).not.toContain('pwned.csv');
    expect(await readdir(stack.lakeRoot)).toEqual([stack.tenant]);
    c.closeSync();
  });
});

describe('trigger-time refusals through the API and the CLI', () => {
  const BOOT = 'bootstrap-admin-key-for-params-test-0123';
  const YAML = `id: typed_api
params:
  n: { type: integer, min: 1, max: 10, description: rows to take }
  region: { type: enum, values: [eu, us], default: eu }
tasks:
  - { id: a, kind: sql, sql: "SELECT {{ params.n | literal }} AS n, {{ params.region | literal }} AS r" }
`;

  it('the API answers 400 naming the param and what fits, and refuses a stored spec that pastes params', async () => {
    const config = loadConfig({
      STRATA_TASK_QUEUE: stack.taskQueue,
      STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
    });
    const { app } = await buildApi({ db: stack.db, client: stack.client, config, dispatcher: false });
    try {
      const tenant = `p${sfx}`;
      const key = (
        await app.inject({
          method: 'POST',
          url: '/api/v1/keys',
          headers: { authorization: `Bearer ${BOOT}` },
          payload: { tenant, role: 'admin' },
        })
      ).json().key as string;
      const auth = { authorization: `Bearer ${key}` };
      const raw = await app.inject({
        method: 'POST',
        url: '/api/v1/pipelines',
        headers: { ...auth, 'content-type': 'application/yaml' },
        payload: YAML.replace('{{ params.n | literal }}', '{{ params.n }}'),
      });
      expect(raw.statusCode).toBe(400);
      expect(raw.json().error ?? raw.body).toMatch(
        /params\.n is a run value and is never pasted into SQL: write \{\{ params\.n \| literal \}\}/,
      );
      expect(
        (
          await app.inject({
            method: 'POST',
            url: '/api/v1/pipelines',
            headers: { ...auth, 'content-type': 'application/yaml' },
            payload: YAML,
          })
        ).statusCode,
      ).toBe(201);
      for (const [params, message] of [
        [
          { n: '1; DROP TABLE t' },
          'params.n: param "n" takes a whole number from 1 to 10: "1; DROP TABLE t" does not fit',
        ],
        [{ n: 11 }, 'params.n: param "n" takes a whole number from 1 to 10: "11" does not fit'],
        [
          { n: 2, region: "eu' OR 1=1" },
          `params.region: param "region" takes one of eu, us: "eu' OR 1=1" does not fit`,
        ],
        [{}, 'params.n: param "n" has no default: pass a value for it'],
      ] as const) {
        const r = await app.inject({
          method: 'POST',
          url: '/api/v1/pipelines/typed_api/runs',
          headers: auth,
          payload: { params },
        });
        expect(r.statusCode, JSON.stringify(params)).toBe(400);
        expect(r.body).toContain(message.replaceAll('"', '\\"'));
      }
      const ok = await app.inject({
        method: 'POST',
        url: '/api/v1/pipelines/typed_api/runs',
        headers: auth,
        payload: { params: { n: 3 } },
      });
      expect(ok.statusCode).toBe(202);

      // A spec registered before typed params (stored as it was then) cannot be triggered.
      const legacy = { ...spec(YAML), id: 'legacy_api' };
      legacy.tasks = [{ id: 'a', kind: 'sql', needs: [], engine: 'duckdb', sql: "SELECT '{{ params.region }}'" }];
      await registerPipeline(stack.db, tenant, legacy);
      const r = await app.inject({
        method: 'POST',
        url: '/api/v1/pipelines/legacy_api/runs',
        headers: auth,
        payload: { params: { n: 3 } },
      });
      expect(r.statusCode).toBe(400);
      expect(r.body).toContain('register a new version that writes {{ params.region | literal }}');
    } finally {
      await app.close();
    }
  });

  it('the run service refuses a bad value and a bad logical date before anything starts', () => {
    const s = spec(YAML);
    expect(() => stack.runs.prepare({ spec: s, tenant: 'acme', trigger: 'manual', params: { n: 'abc' } })).toThrow(
      RequestError,
    );
    expect(() =>
      stack.runs.prepare({
        spec: s,
        tenant: 'acme',
        trigger: 'manual',
        params: { n: '3' },
        logicalDate: '+275760-09-13',
      }),
    ).toThrow(/logicalDate: write an ISO date/);
    expect(() => stack.runs.prepare({ spec: s, tenant: "x' OR 1=1", trigger: 'manual', params: { n: '3' } })).toThrow(
      /tenant: a tenant is lower-case letters/,
    );
  });

  it('the CLI exits with an error naming the param and what fits', async () => {
    const file = path.join(inject('scratchDir'), `typed-${sfx}.yaml`);
    await writeFile(file, YAML);
    const env = { TEMPORAL_ADDRESS: '127.0.0.1:1', STRATA_TASK_QUEUE: stack.taskQueue };
    const r = await runCli(['run', file, '--param', 'n=1 OR 1=1'], env);
    expect(r.code).toBe(2);
    expect(r.out).toContain('params.n: param "n" takes a whole number from 1 to 10: "1 OR 1=1" does not fit');
    const twice = await runCli(['run', file, '-p', 'n=1', '-p', 'n=2'], env);
    expect(twice.out).toContain('--param n is given twice');
  });
});
