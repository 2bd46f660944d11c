/**
 * A task's logs: for Spark on Kubernetes the driver pod's log, streamed (and followed
 * while the task runs); for any task that kept a log tail in its output (external jobs,
 * including failed ones) that tail once the pod or step is gone.
 */
import { PassThrough, type Readable } from 'node:stream';
import { SPARK_APP_VERSION, type SparkK8sClient } from '../activities/spark-k8s/client.js';
import { tenantNamespace } from '../activities/spark-k8s/manifest.js';
import { externalEngineOf, jobName } from '../schemas/external.js';
import { EXTERNAL_JOB, TASK_KINDS } from '../schemas/kinds.js';
import type { RunState } from '../schemas/run.js';
import { RequestError } from '../schemas/errors.js';
import { type RunsService } from './runs.js';

export interface TaskLog {
  /** `driver-pod` (live from Kubernetes) or `log-tail` (kept in the task's output). */
  source: 'driver-pod' | 'log-tail';
  body: Readable | string;
  follow: boolean;
}

export async function taskLog(
  ctx: { runs: RunsService },
  spark: SparkK8sClient | undefined,
  st: RunState,
  taskId: string,
  opts: { follow?: boolean; tailLines?: number },
): Promise<TaskLog> {
  const t = Object.hasOwn(st.tasks, taskId) ? st.tasks[taskId] : undefined;
  if (!t)
    throw new RequestError(
      `run ${st.runId} has no task ${taskId}: it has ${Object.keys(st.tasks).slice(0, 20).join(', ')}${Object.keys(st.tasks).length > 20 ? ', …' : ''}`,
      404,
    );
  if (st.status === 'queued' || st.status === 'failed_to_start')
    throw new RequestError(
      `run ${st.runId} is ${st.status === 'queued' ? 'queued and has not started' : 'one that failed to start'}: its tasks have no logs yet`,
      409,
    );
  const spec = (await ctx.runs.spec(st.runId)).tasks.find((x) => x.id === taskId) as Record<string, unknown> & {
    kind: string;
  };
  const kind = TASK_KINDS[spec.kind];
  const runner = kind?.route?.(spec) ?? kind?.run;
  const tail = typeof t.output?.logTail === 'string' ? t.output.logTail : undefined;
  const isSparkK8s = runner === EXTERNAL_JOB && externalEngineOf(spec) === 'spark-k8s';

  if (isSparkK8s && spark && t.status !== 'pending') {
    const namespace = tenantNamespace(st.tenant);
    const name = jobName(st.workflowId, taskId);
    let pod = typeof t.output?.driverPod === 'string' ? t.output.driverPod : `${name}-driver`;
    try {
      const app = await spark.get('sparkapplications', SPARK_APP_VERSION, namespace, name);
      pod = (app.status as { driverInfo?: { podName?: string } } | undefined)?.driverInfo?.podName ?? pod;
    } catch {
      /* deleted already: the conventional pod name may still answer */
    }
    const follow = (opts.follow ?? true) && t.status === 'running';
    const out = new PassThrough();
    const handle = await spark.streamDriverLog(namespace, pod, out, { follow, tailLines: opts.tailLines });
    if (handle) {
      out.on('close', () => handle.abort());
      return { source: 'driver-pod', body: out, follow };
    }
  }
  if (tail !== undefined) return { source: 'log-tail', body: tail.endsWith('\n') ? tail : tail + '\n', follow: false };
  if (isSparkK8s && t.status === 'pending')
    throw new RequestError(`task ${taskId} has not started: its driver log appears once it runs`, 409);
  if (isSparkK8s && t.status === 'running') {
    if (!spark)
      throw new RequestError(
        'this API has no Kubernetes access (set STRATA_KUBECONFIG or KUBECONFIG) to read a running driver log',
        503,
      );
    throw new RequestError(
      `task ${taskId}: its driver pod has no log yet (the application is still being submitted); try again shortly`,
      409,
    );
  }
  throw new RequestError(
    isSparkK8s
      ? `task ${taskId}: its driver pod is gone and no log tail was kept`
      : `task ${taskId} (${spec.kind}) keeps no log: its engine's message is in the task's error and output (GET …/tasks/${taskId})`,
    404,
  );
}
