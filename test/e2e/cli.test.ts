/** The `strata` command as a user runs it: a real process against the dev server. */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../harness/processes.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let env: Record<string, string>;
const dir = () => path.join(inject('scratchDir'));
beforeAll(async () => {
  stack = await testStack('cli');
  env = {
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    STRATA_TASK_QUEUE: stack.taskQueue,
    STRATA_TENANT: 'clitenant',
    TEMPORAL_UI_URL: 'http://127.0.0.1:8233',
  };
});
afterAll(async () => stack?.close());

async function specFile(name: string, text: string) {
  const f = path.join(dir(), name);
  await writeFile(f, text);
  return f;
}

describe('strata CLI', () => {
  it('validate lists every problem with its path and exits non-zero', async () => {
    const f = await specFile(
      'bad.yaml',
      `id: bad
tasks:
  - { id: a, kind: sql, engine: postgres, sql: "SELECT 1" }
  - { id: b, kind: noop, needs: [c] }
  - { id: c, kind: noop, needs: [b], typo: 1 }
  - { id: d, kind: noop, description: "{{ params.missing }}" }
`,
    );
    const r = await runCli(['validate', f], env);
    expect(r.code).toBe(2);
    expect(r.out).toContain('tasks[0].connection: engine postgres needs a named connection');
    expect(r.out).toContain('tasks[2]: unknown field(s) "typo"');
    expect(r.out).toMatch(/cycle: (b -> c -> b|c -> b -> c)/);
    expect(r.out).toContain('unknown template variable "params.missing"');
    const good = await specFile('good.yaml', 'id: good\ntasks:\n  - { id: a, kind: noop }\n');
    const ok = await runCli(['validate', good], env);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('valid pipeline "good" with 1 task(s)');
  });

  it('run --follow shows progress and exits by the run’s outcome; status, repair and cancel work', async () => {
    const okSpec = await specFile(
      'ok.yaml',
      `id: cli_ok\nparams: { who: x }\ntasks:\n  - { id: first, kind: noop }\n  - { id: second, kind: noop, needs: [first] }\n`,
    );
    const failSpec = await specFile(
      'fail.yaml',
      `id: cli_fail\ntasks:\n  - { id: good, kind: noop }\n  - { id: bad, kind: fail, message: broken on purpose }\n  - { id: after, kind: noop, needs: [bad] }\n`,
    );
    const slowSpec = await specFile('slow.yaml', `id: cli_slow\ntasks:\n  - { id: nap, kind: wait, duration: 5m }\n`);
    await stack.withWorker(async () => {
      const ok = await runCli(['run', okSpec, '--follow', '--param', 'who=me'], env);
      expect(ok.code).toBe(0);
      expect(ok.out).toMatch(/started pipeline\/clitenant\/cli_ok\//);
      expect(ok.out).toMatch(/second\s+success/);
      expect(ok.out).toContain('run success');

      const bad = await runCli(['run', failSpec, '-f'], env);
      expect(bad.code).toBe(1);
      expect(bad.out).toMatch(/bad\s+failed, .*broken on purpose/);
      expect(bad.out).toMatch(/after\s+upstream_failed/);
      const runId = /started (\S+)/.exec(bad.out)![1];

      const status = await runCli(['status', runId], env);
      expect(status.code).toBe(0);
      expect(status.out).toMatch(new RegExp(`${runId.replaceAll('/', '\\/')}\\s+failed`));

      const logs = await runCli(['logs', runId, 'bad'], env);
      expect(logs.code).toBe(2);
      expect(logs.out).toContain('task bad (fail) keeps no log');

      const rep = await runCli(['repair', runId, '--follow'], env);
      expect(rep.out).toMatch(/good\s+success, reused/);
      expect(rep.code).toBe(1); // still fails: the fail task is failing on purpose

      const slow = await runCli(['run', slowSpec], env);
      const slowId = /started (\S+)/.exec(slow.out)![1];
      const cancel = await runCli(['cancel', slowId], env);
      expect(cancel.code).toBe(0);
      expect((await stack.runs.wait(slowId)).status).toBe('cancelled');
      const again = await runCli(['cancel', slowId], env);
      expect(again.code).toBe(2);
      expect(again.out).toContain('has already ended');

      const unknownParam = await runCli(['run', okSpec, '--param', 'nope=1'], env);
      expect(unknownParam.code).toBe(2);
      expect(unknownParam.out).toContain('unknown param "nope"');
      const missing = await runCli(['status', 'pipeline/clitenant/none/none'], env);
      expect(missing.code).toBe(2);
      expect(missing.out).toContain('no run pipeline/clitenant/none/none');
    });
  });
});

describe('strata migrate and keys', () => {
  it('migrates the metastore and creates, lists and revokes keys that the API accepts', async () => {
    const dbs = inject('databases');
    const e = { ...env, DATABASE_URL: dbs.postgresUrl };
    const m = await runCli(['migrate'], e);
    expect(m.code).toBe(0);
    expect(m.out).toMatch(/up to date|applied migrations/);
    const c = await runCli(['keys', 'create', '--tenant', 'clitenant', '--role', 'operator', '--name', 'ci'], e);
    expect(c.code).toBe(0);
    const [idLine, secret] = c.out.trim().split('\n');
    const id = idLine.split('\t')[0];
    expect(secret).toMatch(/^strata_/);
    const { findKey } = await import('../../store/keys.js');
    expect(await findKey(stack.db, secret)).toMatchObject({ tenant: 'clitenant', role: 'operator' });
    const l = await runCli(['keys', 'list', '--tenant', 'clitenant'], e);
    expect(l.out).toContain(`${id}\toperator\tci\tactive`);
    expect(l.out).not.toContain(secret);
    expect((await runCli(['keys', 'revoke', id, '--tenant', 'clitenant'], e)).code).toBe(0);
    expect(await findKey(stack.db, secret)).toBeUndefined();
    const bad = await runCli(['keys', 'create', '--tenant', 'clitenant', '--role', 'root'], e);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--role');
  });
});
