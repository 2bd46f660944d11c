/**
 * Specs by reference stay inside their tenant: a run started straight on Temporal (around
 * the API) that names another tenant's stored spec fails before any task runs, and says
 * nothing of that spec.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SA_PIPELINE, SA_TENANT, SA_TRIGGER } from '../../schemas/workflow-ids.js';
import type { PipelineRunInput } from '../../schemas/run.js';
import { registerPipeline } from '../../store/pipelines.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack('spec-refs');
});
afterAll(async () => stack?.close());

it("a run that names another tenant's spec by reference fails before any task runs", async () => {
  const secret = spec({
    id: 'secret_pipeline',
    tasks: [
      {
        id: 'exfiltrate',
        kind: 'sql',
        engine: 'duckdb',
        sql: "SELECT 'acme internals' AS s",
        output: 'stolen.parquet',
      },
    ],
  });
  const reg = await registerPipeline(stack.db, stack.tenant, secret);
  const input: PipelineRunInput = {
    specRef: { tenant: stack.tenant, pipelineId: secret.id, hash: reg.contentHash, version: reg.version, tasks: 1 },
    tenant: 'intruder',
    trigger: 'manual',
  };
  const id = `pipeline/intruder/${secret.id}/around-the-api`;
  const err = await stack.withWorker(async () => {
    const h = await stack.client.workflow.start('pipelineRun', {
      taskQueue: stack.taskQueue,
      workflowId: id,
      args: [input],
      typedSearchAttributes: [
        { key: SA_PIPELINE, value: secret.id },
        { key: SA_TENANT, value: 'intruder' },
        { key: SA_TRIGGER, value: 'manual' },
      ],
    });
    return h.result().catch((e) => e);
  });
  expect(err).toBeInstanceOf(WorkflowFailedError);
  expect(String(err.cause?.message)).toContain(`pipeline ${secret.id} is not one of tenant intruder's`);
  expect(String(err.cause?.message)).not.toContain('acme internals');
  // Nothing ran: no task activity in its history, no task row, and the run is recorded failed.
  const events = (await stack.client.workflow.getHandle(id).fetchHistory()).events ?? [];
  expect(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runSql')).toHaveLength(0);
  expect(
    events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'loadSpecPage'),
  ).toHaveLength(0);
  expect((await stack.db.query('SELECT count(*)::int AS n FROM run_tasks WHERE run_id = $1', [id])).rows[0].n).toBe(0);
  expect((await stack.db.query('SELECT status, tenant FROM runs WHERE run_id = $1', [id])).rows[0]).toMatchObject({
    status: 'failed',
    tenant: 'intruder',
  });
});
