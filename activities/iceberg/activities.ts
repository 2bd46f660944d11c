/**
 * The write-audit-publish step of an external job as an activity: after the job ends,
 * audit what it staged on its declared outputs and publish or reject it
 * (activities/iceberg/audit.ts). Idempotent: a retry returns the versions already recorded.
 */
import { Context } from '@temporalio/activity';
import path from 'node:path';
import type { RunContext, TaskOutput } from '../../schemas/run.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { jobActivities } from '../core/job.js';
import type { LakeDeps } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';
import { versionOutput } from '../lake/engine.js';
import { auditOutputs } from './audit.js';

export interface WapDeps {
  lake?: LakeDeps;
}

export function createWapActivities(deps: WapDeps) {
  return jobActivities({
    async auditJobOutputs(input: {
      run: RunContext;
      task: Record<string, unknown> & { id: string };
    }): Promise<{ outputs: TaskOutput[] }> {
      if (!deps.lake)
        throw new NonRetryableError(
          'this worker has no lake catalog configured (metastore): tasks with outputs need one',
          'ConfigError',
        );
      const lake = forTenant(deps.lake, input.run.tenant);
      const info = Context.current().info;
      const scratch = path.join(lake.cacheDir, 'scratch', `${info.activityId}-a${info.attempt}`);
      const r = await auditOutputs(lake, { run: input.run, task: input.task, scratch });
      return { outputs: r.versions.map((v) => versionOutput(v, lake.store)) };
    },
  });
}
