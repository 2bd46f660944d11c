/**
 * The template syntax: `{{ name }}` or `{{ params.name }}`, looked up, never evaluated.
 */
import { describe, expect, it } from 'vitest';
import { validateSpec } from '../../schemas/pipeline.js';
import { BUILTIN_VARIABLES, renderDeep, renderString, runVariables, scanTemplate } from '../../schemas/template.js';

const vars = runVariables({
  logicalDate: '2026-03-04T05:06:07.000Z',
  runId: 'run-1',
  pipelineId: 'daily',
  tenant: 'acme',
  trigger: 'schedule',
  params: { region: 'eu', n: '3' },
});

describe('runVariables', () => {
  it('derives ds and ds_nodash from the logical date', () => {
    expect(vars).toEqual({
      ds: '2026-03-04',
      ds_nodash: '20260304',
      logical_date: '2026-03-04T05:06:07.000Z',
      run_id: 'run-1',
      pipeline_id: 'daily',
      tenant: 'acme',
      trigger: 'schedule',
      'params.region': 'eu',
      'params.n': '3',
    });
  });

  it('uses the date as written in the logical date, across a year end', () => {
    const v = runVariables({
      logicalDate: '2025-12-31T23:59:59.999Z',
      runId: 'r',
      pipelineId: 'p',
      tenant: 't',
      trigger: 'manual',
      params: {},
    });
    expect([v.ds, v.ds_nodash]).toEqual(['2025-12-31', '20251231']);
  });

  it('defines every built-in the validator allows, except task_id (added per task by the workflow)', () => {
    expect(
      Object.keys(vars)
        .filter((k) => !k.startsWith('params.'))
        .sort(),
    ).toEqual(BUILTIN_VARIABLES.filter((b) => b !== 'task_id').sort());
  });
});

describe('renderString', () => {
  it('replaces built-ins and params, with or without spaces inside the braces', () => {
    expect(renderString('lake/{{ds}}/{{  params.region  }}/{{ run_id }}.parquet', vars)).toBe(
      'lake/2026-03-04/eu/run-1.parquet',
    );
  });

  it('leaves text without templates alone', () => {
    expect(renderString('SELECT 1 -- { not } a template', vars)).toBe('SELECT 1 -- { not } a template');
  });

  it('throws on an unknown variable, naming it', () => {
    expect(() => renderString('{{ today }}', vars)).toThrow('unknown template variable "today"');
    expect(() => renderString('{{ params.zone }}', vars)).toThrow('unknown template variable "params.zone"');
  });

  it('never reaches Object.prototype: constructor, __proto__ and toString are unknown variables', () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'])
      expect(() => renderString(`{{ ${name} }}`, vars), name).toThrow(`unknown template variable "${name}"`);
  });

  it('does not evaluate code: process.env is a name to look up, and it is unknown', () => {
    expect(() => renderString('{{ process.env }}', vars)).toThrow('unknown template variable "process.env"');
    expect(() => renderString('{{ globalThis.process }}', vars)).toThrow(/unknown template variable/);
  });

  it('leaves expressions as written (they are not variables), and the validator refuses them', () => {
    for (const text of ['{{ 1 + 1 }}', '{{ ds.replace("-", "") }}', '{{ (() => 1)() }}', '{{ params["region"] }}']) {
      expect(renderString(text, vars)).toBe(text);
      expect(scanTemplate(text)).toEqual({ names: [], uses: [], malformed: true });
    }
  });

  it('inserts values literally: no second rendering, no $-patterns', () => {
    const v = { ...vars, 'params.q': "{{ ds }} $& $1 $$ $'" };
    expect(renderString('[{{ params.q }}]', v)).toBe("[{{ ds }} $& $1 $$ $']");
  });
});

describe('renderDeep', () => {
  it('renders every string inside arrays and objects, leaving keys and other values alone', () => {
    const input = {
      '{{ ds }}': 'k',
      sql: 'SELECT {{ params.n }}',
      list: ['{{ tenant }}', 1, true, null, { deep: '{{ pipeline_id }}' }],
    };
    expect(renderDeep(input, vars)).toEqual({
      '{{ ds }}': 'k',
      sql: 'SELECT 3',
      list: ['acme', 1, true, null, { deep: 'daily' }],
    });
    expect(input.sql).toBe('SELECT {{ params.n }}'); // the input is not changed
  });

  it('throws on an unknown variable anywhere inside', () => {
    expect(() => renderDeep({ a: [{ b: '{{ nope }}' }] }, vars)).toThrow('unknown template variable "nope"');
  });
});

describe('scanTemplate', () => {
  it('lists the names used, in order', () => {
    expect(scanTemplate('{{ ds }}-{{params.region}}-{{ ds }}')).toMatchObject({
      names: ['ds', 'params.region', 'ds'],
      malformed: false,
    });
  });

  it('gives each use its filter and place', () => {
    expect(scanTemplate('a {{ params.x | literal }} {{ds}}').uses).toEqual([
      { name: 'params.x', filter: 'literal', start: 2, end: 26 },
      { name: 'ds', start: 27, end: 33 },
    ]);
  });

  it('flags an opening {{ that is not a whole variable', () => {
    expect(scanTemplate('{{ ds }} and {{ oops').malformed).toBe(true);
    expect(scanTemplate('{{ a.b.c }}').malformed).toBe(true);
    expect(scanTemplate('no braces').malformed).toBe(false);
  });

  it('the validator reports what renderString would throw on, before a run', () => {
    const r = validateSpec({
      id: 'p',
      tasks: [{ id: 'a', kind: 'noop', description: '{{ process.env }} {{ constructor }}' }],
    });
    expect(r.ok ? [] : r.problems.map((p) => p.message)).toEqual([
      expect.stringMatching(/^unknown template variable "process.env"/),
      expect.stringMatching(/^unknown template variable "constructor"/),
    ]);
  });
});
