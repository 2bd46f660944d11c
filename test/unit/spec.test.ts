/**
 * Pipeline spec validation: every problem is reported in one pass, each with the path
 * of the offending value and a message that says what to change.
 */
import { describe, expect, it } from 'vitest';
import { effectiveTask, resolveParams, validateSpec, type PipelineSpec, type Problem } from '../../schemas/pipeline.js';
import { parseSpecText } from '../../schemas/spec-file.js';
import { KIND_NAMES } from '../../schemas/kinds.js';
import { toMs } from '../../schemas/duration.js';

/** The problems of an invalid spec (fails the test when the spec is valid). */
function problemsOf(input: unknown): Problem[] {
  const r = validateSpec(input);
  if (r.ok) throw new Error(`expected problems, the spec is valid: ${JSON.stringify(input)}`);
  return r.problems;
}

/** The spec of a valid input (fails the test with the problems otherwise). */
function specOf(input: unknown): PipelineSpec {
  const r = validateSpec(input);
  if (!r.ok) throw new Error(`expected a valid spec: ${JSON.stringify(r.problems, null, 1)}`);
  return r.spec;
}

/** Asserts one problem sits at `path` with a message matching `message`. */
function expectProblem(ps: Problem[], path: string, message: RegExp) {
  expect(
    ps.some((p) => p.path === path && message.test(p.message)),
    `expected a problem at ${path} matching ${message}, got:\n${JSON.stringify(ps, null, 1)}`,
  ).toBe(true);
}

const pipeline = (tasks: unknown[], extra: object = {}) => ({ id: 'p', ...extra, tasks });
const KINDS = KIND_NAMES().join(', ');

describe('validateSpec: unknown and missing fields', () => {
  it('names unknown top-level fields and says to remove or correct them', () => {
    const ps = problemsOf({ id: 'p', colour: 'red', tasks: [{ id: 'a', kind: 'noop' }] });
    expect(ps).toEqual([{ path: '(root)', message: 'unknown field(s) "colour": remove or correct the name' }]);
  });

  it('names unknown fields inside a task, and inside nested objects', () => {
    const ps = problemsOf(
      pipeline([{ id: 'a', kind: 'noop', slep: '1s', retry: { attempts: 2, tries: 3 } }], {
        defaults: { trigger: 'all_done', retries: 1 },
      }),
    );
    expectProblem(ps, 'tasks[0]', /^unknown field\(s\) "slep": remove or correct the name$/);
    expectProblem(ps, 'tasks[0].retry', /unknown field\(s\) "tries"/);
    expectProblem(ps, 'defaults', /unknown field\(s\) "retries"/);
    expect(ps).toHaveLength(3);
  });

  it('fields of another kind are unknown to this one', () => {
    expectProblem(
      problemsOf(pipeline([{ id: 'a', kind: 'noop', sql: 'SELECT 1' }])),
      'tasks[0]',
      /unknown field\(s\) "sql"/,
    );
  });

  it('asks for missing id and tasks', () => {
    const ps = problemsOf({});
    expect(ps).toEqual([
      { path: 'id', message: 'missing: add "id"' },
      { path: 'tasks', message: 'missing: add "tasks"' },
    ]);
  });

  it('asks for at least one task', () => {
    expect(problemsOf(pipeline([]))).toEqual([{ path: 'tasks', message: 'a pipeline needs at least one task' }]);
  });

  it('asks for a task id and a task kind (listing the kinds)', () => {
    const ps = problemsOf(pipeline([{ kind: 'noop' }, { id: 'b' }]));
    expectProblem(ps, 'tasks[0].id', /^missing: add "id"$/);
    expect(ps).toContainEqual({ path: 'tasks[1].kind', message: `missing: add "kind" (one of ${KINDS})` });
  });

  it("asks for a sql task's sql, and refuses an empty one", () => {
    expectProblem(problemsOf(pipeline([{ id: 'a', kind: 'sql' }])), 'tasks[0].sql', /^missing: add "sql"$/);
    expectProblem(problemsOf(pipeline([{ id: 'a', kind: 'sql', sql: '' }])), 'tasks[0].sql', /write the SQL to run/);
  });

  it('refuses ids that are not names', () => {
    const ps = problemsOf({ id: '1 bad', tasks: [{ id: 'has space', kind: 'noop' }] });
    expectProblem(ps, 'id', /pipeline id must start with a letter and hold only letters, digits/);
    expectProblem(ps, 'tasks[0].id', /task id must start with a letter/);
  });

  it('says a task is a mapping when it is not one', () => {
    expectProblem(problemsOf(pipeline(['a'])), 'tasks[0]', /./);
  });

  // Regression guard (found by this suite, fixed).
  it('says a value has the wrong type instead of calling it missing', () => {
    const ps = problemsOf({ id: 'p', maxParallel: 'ten', tasks: [{ id: 'a', kind: 'noop', needs: 'b' }] });
    expectProblem(ps, 'maxParallel', /number/);
    expect(ps.filter((p) => /missing/.test(p.message))).toEqual([]);
  });
});

describe('validateSpec: the graph', () => {
  it('refuses duplicate task ids, pointing at both', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'a', kind: 'noop' },
        { id: 'b', kind: 'noop' },
        { id: 'a', kind: 'noop' },
      ]),
    );
    expect(ps).toEqual([
      { path: 'tasks[2].id', message: 'duplicate task id "a" (also tasks[0]): give each task its own id' },
    ]);
  });

  it('refuses needs naming an unknown task, listing the known ids', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'a', kind: 'noop' },
        { id: 'b', kind: 'noop', needs: ['a', 'ghost'] },
      ]),
    );
    expect(ps).toEqual([
      { path: 'tasks[1].needs[1]', message: 'needs unknown task "ghost": use one of the task ids (a, b)' },
    ]);
  });

  it('refuses a task needing itself (reported once, not also as a cycle)', () => {
    const ps = problemsOf(pipeline([{ id: 'a', kind: 'noop', needs: ['a'] }]));
    expect(ps).toEqual([{ path: 'tasks[0].needs[0]', message: 'task "a" needs itself: remove it from its own needs' }]);
  });

  it('prints a cycle upstream first, closing on its first task', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'a', kind: 'noop', needs: ['c'] },
        { id: 'b', kind: 'noop', needs: ['a'] },
        { id: 'c', kind: 'noop', needs: ['b'] },
        { id: 'd', kind: 'noop', needs: ['c'] },
      ]),
    );
    expect(ps).toEqual([{ path: 'tasks', message: 'cycle: a -> b -> c -> a; remove one of these needs' }]);
  });

  it('finds a two-task cycle behind an acyclic part', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'x', kind: 'noop' },
        { id: 'a', kind: 'noop', needs: ['x', 'b'] },
        { id: 'b', kind: 'noop', needs: ['a'] },
      ]),
    );
    expectProblem(ps, 'tasks', /^cycle: (a -> b -> a|b -> a -> b); remove one of these needs$/);
  });
});

describe('validateSpec: kinds and their fields', () => {
  it('refuses an unknown kind, listing the known ones', () => {
    expect(problemsOf(pipeline([{ id: 'a', kind: 'teleport' }]))).toEqual([
      { path: 'tasks[0].kind', message: `unknown kind "teleport": use one of ${KINDS}` },
    ]);
    expect(KIND_NAMES()).toEqual(expect.arrayContaining(['fail', 'noop', 'reconcile', 'sql', 'wait']));
    expect(KIND_NAMES()).toEqual([...KIND_NAMES()].sort());
  });

  it('sql on postgres or mysql needs a named connection', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'a', kind: 'sql', engine: 'postgres', sql: 'SELECT 1' },
        { id: 'b', kind: 'sql', engine: 'mysql', sql: 'SELECT 1' },
      ]),
    );
    expect(ps).toEqual([
      { path: 'tasks[0].connection', message: 'engine postgres needs a named connection: add "connection: NAME"' },
      { path: 'tasks[1].connection', message: 'engine mysql needs a named connection: add "connection: NAME"' },
    ]);
  });

  it('sql on duckdb (the default engine) takes no connection', () => {
    const ps = problemsOf(pipeline([{ id: 'a', kind: 'sql', sql: 'SELECT 1', connection: 'warehouse' }]));
    expect(ps).toEqual([
      { path: 'tasks[0].connection', message: 'engine duckdb runs over the lake and takes no connection: remove it' },
    ]);
  });

  it('only duckdb writes output files', () => {
    const ps = problemsOf(
      pipeline([{ id: 'a', kind: 'sql', engine: 'postgres', connection: 'pg', sql: 'SELECT 1', output: 'x.parquet' }]),
    );
    expectProblem(ps, 'tasks[0].output', /output files are written by engine duckdb only/);
  });

  it('refuses an unknown engine', () => {
    expectProblem(
      problemsOf(pipeline([{ id: 'a', kind: 'sql', engine: 'oracle', sql: 'SELECT 1' }])),
      'tasks[0].engine',
      /duckdb/,
    );
  });
});

describe('validateSpec: durations and trigger rules', () => {
  it.each(['5 minutes', '5', '-1s', '1.5', 'ms', '1w', '1h30m', ' 5s'])(
    'refuses the duration %j with a hint',
    (bad) => {
      const ps = problemsOf(
        pipeline([{ id: 'a', kind: 'wait', duration: bad, timeout: bad }], { defaults: { timeout: bad } }),
      );
      const hint = /write a duration like "500ms", "30s", "5m", "2h" or "1d", or a number of milliseconds/;
      expectProblem(ps, 'tasks[0].duration', hint);
      expectProblem(ps, 'tasks[0].timeout', hint);
      expectProblem(ps, 'defaults.timeout', hint);
    },
  );

  it('refuses negative and fractional millisecond counts', () => {
    expectProblem(problemsOf(pipeline([{ id: 'a', kind: 'wait', duration: -1 }])), 'tasks[0].duration', /./);
    expectProblem(problemsOf(pipeline([{ id: 'a', kind: 'wait', duration: 1.5 }])), 'tasks[0].duration', /./);
  });

  it('refuses bad durations in a retry policy', () => {
    const ps = problemsOf(
      pipeline([{ id: 'a', kind: 'noop', retry: { initialInterval: 'soon', maxInterval: '1 hour' } }]),
    );
    expectProblem(ps, 'tasks[0].retry.initialInterval', /write a duration like/);
    expectProblem(ps, 'tasks[0].retry.maxInterval', /write a duration like/);
  });

  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    [0, 0],
    [42, 42],
  ] as const)('accepts the duration %j (%i ms)', (d, ms) => {
    specOf(pipeline([{ id: 'a', kind: 'wait', duration: d }]));
    expect(toMs(d)).toBe(ms);
  });

  it('refuses an unknown trigger rule in a task and in the defaults, listing the rules', () => {
    const ps = problemsOf(
      pipeline([{ id: 'a', kind: 'noop', trigger: 'sometimes' }], { defaults: { trigger: 'all_sucess' } }),
    );
    expectProblem(ps, 'tasks[0].trigger', /all_success.*none_failed_min_one_success.*always/);
    expectProblem(ps, 'defaults.trigger', /all_success/);
  });
});

describe('validateSpec: templates', () => {
  it('accepts built-in variables and declared params anywhere in a task', () => {
    specOf(
      pipeline(
        [
          {
            id: 'a',
            kind: 'sql',
            sql: "SELECT '{{ ds }}', '{{ds_nodash}}', {{ params.region | literal }}, '{{ task_id }}', '{{ run_id }}'",
            output: 'out/{{ tenant }}/{{ pipeline_id }}/{{ logical_date }}-{{ trigger }}/{{ params.region }}.parquet',
          },
        ],
        {
          params: { region: 'eu' },
        },
      ),
    );
  });

  it('refuses unknown variables, naming the allowed ones', () => {
    const ps = problemsOf(pipeline([{ id: 'a', kind: 'sql', sql: 'SELECT {{ date }}' }]));
    expect(ps).toEqual([
      {
        path: 'tasks[0].sql',
        message:
          'unknown template variable "date": use one of ds, ds_nodash, logical_date, run_id, pipeline_id, task_id, tenant, trigger or params.NAME',
      },
    ]);
  });

  it('refuses params that are not declared', () => {
    const ps = problemsOf(
      pipeline([{ id: 'a', kind: 'noop', description: '{{ params.region }} {{ params.zone }}' }], {
        params: { region: 'eu' },
      }),
    );
    expect(ps).toEqual([
      {
        path: 'tasks[0].description',
        message: 'unknown template variable "params.zone": use a param declared under "params"',
      },
    ]);
  });

  it('points into nested values', () => {
    const ps = problemsOf(
      pipeline([
        { id: 'a', kind: 'reconcile', left: { uri: 'lake/{{ dss }}.csv' }, right: 'lake/b.csv', key: ['{{ nope }}'] },
      ]),
    );
    expectProblem(ps, 'tasks[0].left.uri', /unknown template variable "dss"/);
  });

  it.each(['{{ ds', '{{ ds }', '{{ }}', '{{ 1 + 1 }}', '{{ a.b.c }}', '{{ ds | upper | lower }}', '{{ params["x"] }}'])(
    'refuses the malformed template %j',
    (text) => {
      expectProblem(
        problemsOf(pipeline([{ id: 'a', kind: 'noop', description: text }])),
        'tasks[0].description',
        /^malformed template: write variables as \{\{ name \}\} or \{\{ params.name \}\} \(in SQL: \{\{ params.name \| literal \}\} or \{\{ params.name \| ident \}\}\)$/,
      );
    },
  );

  it('refuses filters other than literal and ident', () => {
    expectProblem(
      problemsOf(pipeline([{ id: 'a', kind: 'sql', sql: 'SELECT {{ ds | upper }}' }])),
      'tasks[0].sql',
      /^unknown filter "upper" in \{\{ ds \| upper \}\}: use literal or ident$/,
    );
  });
});

describe('validateSpec: every problem at once', () => {
  it('reports eight different problems together, each at its path', () => {
    const ps = problemsOf({
      id: 'p',
      schedule: '@daily', // 1. unknown top-level field
      tasks: [
        { id: 'extract', kind: 'sql', engine: 'postgres', sql: 'SELECT 1' }, // 2. postgres without connection
        { id: 'load', kind: 'sql', needs: ['extract', 'ghost'], sql: 'SELECT {{ today }}' }, // 3. unknown need, 4. unknown variable
        { id: 'load', kind: 'noop' }, // 5. duplicate id
        { id: 'nap', kind: 'wait', duration: 'a while' }, // 6. bad duration
        { id: 'beam', kind: 'teleport' }, // 7. unknown kind
        { id: 'x', kind: 'noop', needs: ['y'] }, // 8. cycle x <-> y
        { id: 'y', kind: 'noop', needs: ['x'] },
      ],
    });
    expect(ps.map((p) => p.path).sort()).toEqual(
      [
        '(root)',
        'tasks[0].connection',
        'tasks[1].needs[1]',
        'tasks[1].sql',
        'tasks[2].id',
        'tasks[3].duration',
        'tasks[4].kind',
        'tasks',
      ].sort(),
    );
    expectProblem(ps, '(root)', /unknown field\(s\) "schedule"/);
    expectProblem(ps, 'tasks[0].connection', /engine postgres needs a named connection/);
    expectProblem(ps, 'tasks[1].needs[1]', /needs unknown task "ghost"/);
    expectProblem(ps, 'tasks[1].sql', /unknown template variable "today"/);
    expectProblem(ps, 'tasks[2].id', /duplicate task id "load"/);
    expectProblem(ps, 'tasks[3].duration', /write a duration like/);
    expectProblem(ps, 'tasks[4].kind', /unknown kind "teleport"/);
    expectProblem(ps, 'tasks', /^cycle: (x -> y -> x|y -> x -> y)/);
  });

  it('still checks the tasks when the top level is wrong', () => {
    const ps = problemsOf({
      id: 'p',
      maxParallel: 0,
      tasks: [
        { id: 'a', kind: 'noop', trigger: 'never' },
        { id: 'b', kind: 'noop', needs: ['b'] },
      ],
    });
    expectProblem(ps, 'maxParallel', /./);
    expectProblem(ps, 'tasks[0].trigger', /all_success/);
    expectProblem(ps, 'tasks[1].needs[0]', /needs itself/);
  });

  // Regression guard (found by this suite, fixed).
  it('does not report declared params as unknown when the top level has a problem', () => {
    const ps = problemsOf({
      id: 'p',
      colour: 'red',
      params: { region: 'eu' },
      tasks: [{ id: 'a', kind: 'noop', description: '{{ params.region }}' }],
    });
    expect(ps).toEqual([{ path: '(root)', message: 'unknown field(s) "colour": remove or correct the name' }]);
  });

  // Regression guard (found by this suite, fixed).
  it('validates a 20,000-task chain listed downstream first', () => {
    const n = 20_000;
    const tasks = Array.from({ length: n }, (_, i) => ({
      id: `t${n - 1 - i}`,
      kind: 'noop',
      needs: i < n - 1 ? [`t${n - 2 - i}`] : [],
    }));
    expect(validateSpec({ id: 'long', tasks }).ok).toBe(true);
  });
});

describe('a valid spec', () => {
  it('comes back with defaults applied', () => {
    const spec = specOf({
      id: 'ok',
      tasks: [
        { id: 'a', kind: 'sql', sql: 'SELECT 1' },
        { id: 'b', kind: 'fail', needs: ['a'] },
      ],
    });
    expect(spec).toEqual({
      id: 'ok',
      maxParallel: 16,
      defaults: {},
      params: {},
      tasks: [
        { id: 'a', kind: 'sql', sql: 'SELECT 1', engine: 'duckdb', needs: [] },
        { id: 'b', kind: 'fail', needs: ['a'], message: 'failed on purpose', nonRetryable: false },
      ],
    });
  });

  it('gets the default retry, timeout and trigger through effectiveTask', () => {
    const spec = specOf(pipeline([{ id: 'a', kind: 'noop' }]));
    expect(effectiveTask(spec, spec.tasks[0])).toEqual({
      retry: { attempts: 1, initialInterval: '1s', backoff: 2, maxInterval: '5m' },
      timeout: '1h',
      trigger: 'all_success',
    });
  });

  it('takes pipeline defaults, and a task overrides them', () => {
    const spec = specOf(
      pipeline(
        [
          { id: 'a', kind: 'noop' },
          { id: 'b', kind: 'noop', needs: ['a'], trigger: 'all_done', timeout: '5m', retry: { attempts: 5 } },
        ],
        { defaults: { retry: { attempts: 3 }, timeout: '10m', trigger: 'none_failed' } },
      ),
    );
    expect(effectiveTask(spec, spec.tasks[0])).toEqual({
      retry: { attempts: 3, initialInterval: '1s', backoff: 2, maxInterval: '5m' },
      timeout: '10m',
      trigger: 'none_failed',
    });
    expect(effectiveTask(spec, spec.tasks[1])).toEqual({
      retry: { attempts: 5, initialInterval: '1s', backoff: 2, maxInterval: '5m' },
      timeout: '5m',
      trigger: 'all_done',
    });
  });
});

describe('parseSpecText', () => {
  it('parses YAML and validates it', () => {
    const r = parseSpecText(
      'id: daily\ntasks:\n  - id: a\n    kind: noop\n  - id: b\n    kind: wait\n    duration: 5s\n    needs: [a]\n',
    );
    expect(r.ok && r.spec.tasks.map((t) => [t.id, t.needs])).toEqual([
      ['a', []],
      ['b', ['a']],
    ]);
  });

  it('parses JSON too', () => {
    expect(parseSpecText('{"id": "j", "tasks": [{"id": "a", "kind": "noop"}]}').ok).toBe(true);
  });

  it('reports broken YAML as one (yaml) problem', () => {
    const r = parseSpecText('id: x\ntasks: [\n  - id: a\n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].path).toBe('(yaml)');
    expect(r.problems[0].message).toMatch(/^not valid YAML: /);
  });

  it('refuses duplicate keys instead of letting the last one win', () => {
    const top = parseSpecText('id: x\nid: y\ntasks:\n  - {id: a, kind: noop}\n');
    expect(top).toMatchObject({ ok: false, problems: [{ path: '(yaml)', message: expect.stringMatching(/unique/i) }] });
    const inTask = parseSpecText('id: x\ntasks:\n  - id: a\n    kind: noop\n    kind: sql\n');
    expect(inTask).toMatchObject({ ok: false, problems: [{ path: '(yaml)' }] });
  });

  it.each(['', '- a\n- b\n', 'just text', '42'])('refuses a document %j that is not a mapping', (text) => {
    expect(parseSpecText(text)).toEqual({
      ok: false,
      problems: [{ path: '(root)', message: 'a spec is a mapping with "id" and "tasks"' }],
    });
  });

  it('passes validation problems through', () => {
    expect(parseSpecText('id: x\ntasks:\n  - {id: a, kind: nope}\n')).toMatchObject({
      ok: false,
      problems: [{ path: 'tasks[0].kind' }],
    });
  });
});

describe('resolveParams', () => {
  const spec = specOf(
    pipeline([{ id: 'a', kind: 'noop' }], {
      params: { region: 'eu', n: 3, dry: false, day: { description: 'no default' }, env: { default: 'prod' } },
    }),
  );

  it('takes declared defaults (as strings) and given values', () => {
    expect(resolveParams(spec, { day: 'mon' })).toEqual({
      params: { region: 'eu', n: '3', dry: 'false', env: 'prod', day: 'mon' },
      problems: [],
    });
  });

  it('lets given values override defaults', () => {
    expect(resolveParams(spec, { day: 'tue', region: 'us', n: '7' }).params).toEqual({
      region: 'us',
      n: '7',
      dry: 'false',
      env: 'prod',
      day: 'tue',
    });
  });

  it('refuses unknown params, listing the declared ones', () => {
    expect(resolveParams(spec, { day: 'mon', zone: 'x' }).problems).toEqual([
      {
        path: 'params.zone',
        message: 'unknown param "zone": declare it under "params" or use one of region, n, dry, day, env',
      },
    ]);
    const none = specOf(pipeline([{ id: 'a', kind: 'noop' }]));
    expect(resolveParams(none, { zone: 'x' }).problems[0].message).toMatch(/\(none declared\)/);
  });

  it('asks for a value for every param without a default', () => {
    expect(resolveParams(spec, {}).problems).toEqual([
      { path: 'params.day', message: 'param "day" has no default: pass a value for it' },
    ]);
  });

  // Regression guard (found by this suite, fixed).
  it('refuses names inherited from Object.prototype', () => {
    const r = resolveParams(spec, { day: 'mon', constructor: 'x' });
    expect(r.problems).toEqual([expect.objectContaining({ path: 'params.constructor' })]);
  });
});
