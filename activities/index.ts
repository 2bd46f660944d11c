/** Every activity the worker registers, built over its clients and config. */
import { createAirbyteActivities, type AirbyteDeps } from './airbyte/activities.js';
import { createClusterActivities, type ClusterDeps } from './clusters/activities.js';
import { createControlActivities } from './control/activities.js';
import type { Db } from '../store/db.js';
import { createMetastoreActivities } from './metastore/activities.js';
import { createNotifyActivities, type NotifyDeps } from './notify/activities.js';
import { createSpecLoader } from './metastore/specs.js';
import { pollUntilDone } from './core/sensor.js';
import { recordFor } from '../schemas/guards.js';
import { TASK_ACTIVITIES, type TaskActivityName } from '../schemas/kinds.js';
import type { TaskActivity, TaskActivityInput, TaskEnvelope } from '../schemas/run.js';
import { createReconcileActivities, type ReconcileDeps } from './reconcile/activities.js';
import { createEmrActivities, type EmrDeps } from './emr/activities.js';
import { createSparkActivities, type SparkDeps } from './spark-k8s/activities.js';
import { createSqlActivities, type SqlDeps } from './sql/activities.js';
import { createLakeActivities } from './lake/activities.js';
import { createS3Activities } from './s3/activities.js';
import type { S3Config } from './s3/client.js';
import { createSweeperActivities } from './sweeper/activities.js';
import { createWapActivities } from './iceberg/activities.js';
import { createMaintenanceActivities } from './maintenance/activities.js';

/**
 * `lake` (store + catalog) enables datasets, ingestion and s3.* tasks; `s3` holds S3 settings;
 * `db` is the metastore. External-engine clients are optional: a worker without them
 * refuses those tasks clearly.
 */
export type ActivityDeps = SqlDeps &
  Partial<Omit<ReconcileDeps, 'lakeRoot'>> & { s3?: S3Config; db?: Db } & SparkDeps &
  EmrDeps &
  AirbyteDeps &
  ClusterDeps &
  Omit<NotifyDeps, 'db'> & {
    /** Table maintenance: the youngest an unreferenced file may be and still be removed (ms; default 1 h). */
    orphanFloorMs?: number;
  };

export function createActivities(deps: ActivityDeps) {
  const specs = createSpecLoader(deps.db);
  const spark = createSparkActivities(deps);
  const emr = createEmrActivities(deps);
  const airbyte = createAirbyteActivities(deps);
  const acts = {
    ...specs.activities,
    ...createControlActivities(),
    ...createSqlActivities(deps),
    ...createReconcileActivities({ ...deps, tenantLocations: deps.tenantLocations ?? deps.lake?.tenantLocations }),
    ...createMetastoreActivities(deps.db),
    ...createLakeActivities(deps),
    ...createS3Activities(() => (deps.lake ? { lake: deps.lake, s3: deps.s3 } : undefined)),
    ...spark,
    ...emr,
    ...airbyte,
    ...createClusterActivities(deps),
    ...createNotifyActivities(deps),
    // The sweeper stops a ledger's job through its engine's own poll and cancel.
    ...createSweeperActivities({
      ...deps,
      jobs: {
        'spark-k8s': { poll: (r) => spark.sparkPoll(r), cancel: (r) => spark.sparkCancel(r) },
        emr: { poll: (r) => emr.emrPoll(r), cancel: (r) => emr.emrCancel(r) },
        airbyte: { poll: (r) => airbyte.airbytePoll(r), cancel: (r) => airbyte.airbyteCancel(r) },
      },
    }),
    ...createWapActivities(deps),
    ...createMaintenanceActivities(deps),
  };
  // Every activity the task kinds name is implemented, with the task activity's signature:
  // a kind naming an activity that does not exist, or one of another shape, fails to compile.
  const implemented: Record<TaskActivityName, (i: TaskActivityInput) => Promise<TaskEnvelope>> = acts;
  // Task activities also take a task by reference (the spec stays in the metastore: the
  // activity loads and renders its task), and run a sensor's whole poll loop when asked.
  const byRef = (fn: (i: TaskActivityInput) => Promise<TaskEnvelope>): TaskActivity => {
    return async (input) => {
      const plain: TaskActivityInput =
        'ref' in input ? { task: await specs.resolve(input), run: input.run, sensor: input.sensor } : input;
      return plain.sensor ? pollUntilDone(fn, { ...plain, sensor: plain.sensor }) : fn(plain);
    };
  };
  const tasks = recordFor(TASK_ACTIVITIES, (name) => byRef(implemented[name]));
  return { ...acts, ...tasks };
}

/** Every activity the worker registers, by name and signature: what workflows proxy. */
export type WorkerActivities = ReturnType<typeof createActivities>;
