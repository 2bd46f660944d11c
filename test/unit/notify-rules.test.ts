/**
 * Notify rules of reconciliation mappings and of cancelled runs, without servers: where a
 * mapping's rules are checked and reported, how runs carry them (the skeleton), which
 * events a run's outcome fires for the pipeline's rules and for each mapping's.
 */
import { describe, expect, it } from 'vitest';
import {
  cancelNotifies,
  endEvents,
  reconcileLookup,
  withReconciliations,
  type NotifyRuleRef,
  type ReconcileOutcome,
  type RunOutcome,
} from '../../schemas/notify.js';
import { notifyRuleSets, validateSpec, type Problem } from '../../schemas/pipeline.js';
import { skeletonPage } from '../../schemas/skeleton.js';

const mapping = (extra: object = {}) => ({
  name: 'orders_mig',
  left: 'landing/l.csv',
  right: 'landing/r.csv',
  key: ['id'],
  ...extra,
});
const withMappings = (reconciliations: unknown[], extra: object = {}) => ({
  id: 'p',
  tasks: [{ id: 'a', kind: 'noop' }],
  reconciliations,
  ...extra,
});

function problemsOf(input: unknown): Problem[] {
  const r = validateSpec(input);
  if (r.ok) throw new Error('expected problems, the spec is valid');
  return r.problems;
}

describe('a mapping’s notify rules', () => {
  it('ride on the mapping’s reconcile task and reach the run as {mapping}:{rule}, after the pipeline’s', () => {
    const r = validateSpec(
      withMappings(
        [
          mapping({
            policy: 'warn',
            notify: [
              { id: 'owner', on: ['quality_warning', 'failure'], channel: 'oncall' },
              { on: ['success'], channel: 'data_mail' },
            ],
          }),
          mapping({ name: 'quiet', right: 'landing/l.csv' }),
        ],
        { notify: [{ on: ['failure'], channel: 'oncall' }] },
      ),
    );
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(r.mapped).toBe(2);
    expect(r.spec.tasks.find((t) => t.id === 'reconcile-orders_mig')!.notify).toHaveLength(2);
    expect(notifyRuleSets(r.spec, r.mapped).map((s) => s.at)).toEqual(['notify', 'reconciliations[0].notify']);
    expect(skeletonPage(r.spec).notify!.rules).toEqual([
      { id: 'oncall', on: ['failure'], channel: 'oncall' },
      {
        id: 'orders_mig:owner',
        on: ['quality_warning', 'failure'],
        channel: 'oncall',
        mapping: { name: 'orders_mig', task: 'reconcile-orders_mig' },
      },
      {
        id: 'orders_mig:data_mail',
        on: ['success'],
        channel: 'data_mail',
        mapping: { name: 'orders_mig', task: 'reconcile-orders_mig' },
      },
    ]);
  });

  it('give a run notify rules even when the pipeline declares none', () => {
    const r = validateSpec(withMappings([mapping({ notify: [{ on: ['failure'], channel: 'oncall' }] })]));
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    expect(skeletonPage(r.spec).notify!.rules.map((x) => x.id)).toEqual(['orders_mig:oncall']);
    const none = validateSpec(withMappings([mapping()]));
    if (!none.ok) throw new Error(JSON.stringify(none.problems));
    expect(skeletonPage(none.spec).notify).toBeUndefined();
  });

  it('name only the mapping’s events, each rule once, and say where', () => {
    const ps = problemsOf(
      withMappings([
        mapping({
          notify: [
            { on: ['sla_missed'], channel: 'oncall' },
            { on: ['failure'], channel: 'oncall' },
          ],
        }),
      ]),
    );
    expect(ps).toEqual([
      {
        path: 'reconciliations[0].notify[0].on[0]',
        message: expect.stringContaining('"sla_missed" is not an event here: use failure, success, quality_warning'),
      },
      {
        path: 'reconciliations[0].notify[1].channel',
        message: expect.stringContaining('two rules are called "oncall" (also notify[0])'),
      },
    ]);
  });

  it('on a reconcile task written by hand need its mapping name', () => {
    const ps = problemsOf({
      id: 'p',
      tasks: [
        { id: 'r', kind: 'reconcile', left: 'l.csv', right: 'r.csv', notify: [{ on: ['failure'], channel: 'x' }] },
      ],
    });
    expect(ps).toEqual([{ path: 'tasks[0].notify', message: expect.stringContaining('need "mapping"') }]);
  });

  it('are declared once per mapping name and at most 100 over the spec', () => {
    const dup = problemsOf({
      id: 'p',
      tasks: [
        {
          id: 'by_hand',
          kind: 'reconcile',
          left: 'l.csv',
          right: 'r.csv',
          mapping: 'orders_mig',
          notify: [{ on: ['failure'], channel: 'x' }],
        },
      ],
      reconciliations: [mapping({ notify: [{ on: ['failure'], channel: 'x' }] })],
    });
    expect(dup).toEqual([
      {
        path: 'reconciliations[0].notify',
        message: expect.stringContaining('already has notify rules (tasks[0].notify)'),
      },
    ]);
    const many = Array.from({ length: 6 }, (_, i) =>
      mapping({
        name: `m${i}`,
        notify: Array.from({ length: 20 }, (__, j) => ({ id: `r${j}`, on: ['failure'], channel: 'x' })),
      }),
    );
    expect(problemsOf(withMappings(many))).toEqual([
      { path: 'reconciliations[0]', message: expect.stringContaining('120 notify rules together; at most 100') },
    ]);
  });
});

const run = (o: Partial<RunOutcome> = {}): RunOutcome => ({ status: 'success', exhausted: [], warned: [], ...o });
const mig: NotifyRuleRef = {
  id: 'orders_mig:owner',
  on: ['failure', 'success', 'quality_warning'],
  channel: 'oncall',
  mapping: { name: 'orders_mig', task: 'reconcile-orders_mig' },
};
const pipelineQuality: NotifyRuleRef = { id: 'q', on: ['quality_warning'], channel: 'oncall' };
const found = (o: Partial<ReconcileOutcome>): ReconcileOutcome => ({
  task: 'reconcile-orders_mig',
  mapping: 'orders_mig',
  policy: 'warn',
  status: 'success',
  differences: 3,
  counts: { matched: 1, changed: 1, onlyLeft: 1, onlyRight: 1 },
  ...o,
});

describe('events of a finished run', () => {
  it('a warn comparison that differs is a quality warning of the run, naming its mapping and counts', () => {
    const o = withReconciliations(run(), [found({})]);
    expect(o.warned).toEqual([
      {
        task: 'reconcile-orders_mig',
        checks: ['mapping orders_mig differs: 1 changed, 1 only left, 1 only right'],
        mapping: 'orders_mig',
        differences: 3,
        counts: { matched: 1, changed: 1, onlyLeft: 1, onlyRight: 1 },
      },
    ]);
    expect(endEvents([pipelineQuality, mig], o).map((e) => `${e.rule.id}:${e.event}`)).toEqual([
      'q:quality_warning',
      'orders_mig:owner:quality_warning',
    ]);
    // Under record it is the mapping's own quality_warning only; the run has none.
    const rec = withReconciliations(run(), [found({ policy: 'record' })]);
    expect(endEvents([pipelineQuality, mig], rec).map((e) => `${e.rule.id}:${e.event}`)).toEqual([
      'orders_mig:owner:quality_warning',
    ]);
  });

  it('a mapping’s rules hear success when it matched, failure when its task failed, nothing when it did not run', () => {
    const ev = (r: ReconcileOutcome[]) => endEvents([mig], withReconciliations(run(), r)).map((e) => e.event);
    expect(ev([found({ differences: 0, counts: { matched: 4, changed: 0, onlyLeft: 0, onlyRight: 0 } })])).toEqual([
      'success',
    ]);
    expect(ev([found({ policy: 'fail', status: 'failed', error: 'datasets differ' })])).toEqual(['failure']);
    expect(ev([found({ status: 'failed', differences: undefined, counts: undefined, error: 'no file' })])).toEqual([
      'failure',
    ]);
    // A repair's reused task (no comparison in this run), a skipped one, or none at all.
    expect(ev([found({ differences: undefined, counts: undefined })])).toEqual([]);
    expect(ev([found({ status: 'upstream_failed', differences: undefined })])).toEqual([]);
    expect(ev([])).toEqual([]);
    // A rule that does not name the event stays quiet.
    expect(endEvents([{ ...mig, on: ['failure'] }], withReconciliations(run(), [found({})]))).toEqual([]);
  });

  it('a cancelled run fires cancelled (and warnings it had), never failure or success', () => {
    const rules: NotifyRuleRef[] = [
      { id: 'c', on: ['cancelled', 'failure', 'success'], channel: 'oncall' },
      { id: 'w', on: ['quality_warning', 'retry_exhausted'], channel: 'oncall' },
    ];
    const o = run({ status: 'cancelled', warned: [{ task: 't', checks: ['x'] }] });
    expect(endEvents(rules, o).map((e) => `${e.rule.id}:${e.event}`)).toEqual(['c:cancelled', 'w:quality_warning']);
    expect(endEvents(rules, run({ status: 'failed' })).map((e) => e.event)).toEqual(['failure']);
    expect(cancelNotifies([{ id: 'f', on: ['failure', 'success', 'sla_missed'], channel: 'x' }])).toBe(false);
    expect(cancelNotifies(rules)).toBe(true);
    expect(cancelNotifies([mig])).toBe(true);
  });

  it('the notifier looks up reconciliations only for mapping rules or the run’s quality_warning rules', () => {
    expect(reconcileLookup([{ id: 'f', on: ['failure'], channel: 'x' }])).toBeUndefined();
    expect(reconcileLookup([pipelineQuality])).toEqual({ tasks: [], warned: true });
    expect(reconcileLookup([mig, { ...mig, id: 'other' }])).toEqual({ tasks: ['reconcile-orders_mig'], warned: false });
  });
});
