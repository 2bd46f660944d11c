/** What the reconcile engine tests share: a planted pair in the lake, and "the same answer as the local exact path". */
import path from 'node:path';
import { expect } from 'vitest';
import { generatePair, type GenOptions, type Truth } from '../fakes/reconcile-data.js';
import { lakeQuery } from './duck.js';
import type { PipelineSpec } from '../../schemas/pipeline.js';
import type { RunState } from '../../schemas/run.js';
import { spec } from './specs.js';
import type { TestStack } from './temporal.js';

/** Polls of an external job short enough for tests. */
export const FAST_POLL = { initial: '40ms', max: '200ms', backoff: 1.5 };
const PAIR = { left: 'landing/l.csv', right: 'landing/r.csv', key: ['id'] };

/** Pipeline `id` of one task `task` reconciling the landed pair on engine spark, with `fields` over the defaults. */
export const sparkReconcileSpec = (id: string, task: string, fields: Record<string, unknown> = {}): PipelineSpec =>
  spec({ id, tasks: [{ id: task, kind: 'reconcile', engine: 'spark', ...PAIR, poll: FAST_POLL, ...fields }] });

/**
 * Pipeline `id` reconciling the landed pair twice, all samples kept: task `local` on the local
 * exact path (its differences to silver.diffs_local), task `task` on engine spark with `fields`.
 */
export const localAndSparkSpec = (id: string, task: string, fields: Record<string, unknown>): PipelineSpec =>
  spec({
    id,
    tasks: [
      { id: 'local', kind: 'reconcile', ...PAIR, sampleLimit: 1000, differences: 'silver.diffs_local' },
      { id: task, kind: 'reconcile', engine: 'spark', ...PAIR, sampleLimit: 1000, poll: FAST_POLL, ...fields },
    ],
  });

/** Generates a pair in `scratch` and puts it in the stack tenant's lake as landing/l.csv and landing/r.csv. */
export async function landPair(stack: TestStack, scratch: string, o: GenOptions): Promise<Truth> {
  const l = path.join(scratch, 'l.csv');
  const r = path.join(scratch, 'r.csv');
  const truth = await generatePair(l, r, o);
  await stack.store!.putFile('landing/l.csv', l);
  await stack.store!.putFile('landing/r.csv', r);
  return truth;
}

/** Samples as comparable text, in no particular order. */
export const sortedJson = (xs: unknown) => (Array.isArray(xs) ? xs.map((x) => JSON.stringify(x)).sort() : xs);

/**
 * That in the run `st` of a localAndSparkSpec both tasks succeeded, `local` found the planted
 * `truth`, and `task` (on engine spark, exactly) gave the same answer in every part: counts,
 * column mismatches, duplicates, samples, columns, and the full list of differences catalogued
 * as `diffs` (the same rows as silver.diffs_local). Returns the engine task's output.
 */
export async function expectSameAnswer(
  stack: TestStack,
  st: RunState,
  task: string,
  truth: Truth,
  diffs: string,
): Promise<Record<string, any>> {
  expect(st.tasks.local.status, JSON.stringify(st.tasks.local)).toBe('success');
  expect(st.tasks[task].status, JSON.stringify(st.tasks[task])).toBe('success');
  const a = st.tasks.local.output as Record<string, any>;
  const b = st.tasks[task].output as Record<string, any>;
  expect(b.method).toBe('spark');
  expect(b.exact).toBe(true);
  expect(a.counts).toMatchObject({ changed: truth.changed, onlyLeft: truth.onlyLeft, onlyRight: truth.onlyRight });
  expect(b.counts).toEqual(a.counts);
  expect(b.columnMismatches).toEqual(a.columnMismatches);
  expect(b.differences).toBe(a.differences);
  for (const side of ['left', 'right']) {
    expect(b.duplicates[side].keys).toBe(a.duplicates[side].keys);
    expect(b.duplicates[side].rows).toBe(a.duplicates[side].rows);
    expect(sortedJson(b.duplicates[side].samples)).toEqual(sortedJson(a.duplicates[side].samples));
  }
  // Fewer differences of each kind than the sample limit: the samples are all of them.
  for (const k of ['onlyLeft', 'onlyRight', 'changed'])
    expect(sortedJson(b.samples[k])).toEqual(sortedJson(a.samples[k]));
  expect(b.columns).toEqual(a.columns);
  // The full lists, as catalogued datasets: the same rows.
  const local = await lakeQuery(stack, 'SELECT * FROM silver.diffs_local ORDER BY ALL');
  expect(local.length).toBeGreaterThan(truth.changed);
  expect(await lakeQuery(stack, `SELECT * FROM ${diffs} ORDER BY ALL`)).toEqual(local);
  expect(b.differencesDataset).toMatchObject({ dataset: diffs, version: 1, rows: local.length });
  return b;
}
