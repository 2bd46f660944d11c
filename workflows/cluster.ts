/**
 * clusterLifecycle: one entity workflow per cluster (`cluster/{tenant}/{name}`).
 * Provisions, waits until ready, then lives: each `touch` resets the idle timer, `resize`
 * changes its size, `terminate` or the idle/lifetime limits end it. Continues as new to
 * keep its history small. Cancelling it (Temporal UI, CLI or API) terminates the cluster at the
 * provider before the workflow ends; only a Temporal *terminate* skips that, and the sweeper
 * (workflows/sweeper.ts) stops what such a workflow left behind.
 */
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { ClusterProvider } from '../schemas/cluster-provider.js';
import type { ClusterSize } from '../schemas/cluster.js';
import {
  clusterStateQuery,
  resizeUpdate,
  terminateSignal,
  touchSignal,
  type ClusterInput,
  type ClusterState,
} from './cluster-messages.js';

const acts = proxyActivities<ClusterProvider>({
  startToCloseTimeout: '2m',
  retry: {
    initialInterval: '500ms',
    backoffCoefficient: 2,
    maximumInterval: '30s',
    maximumAttempts: 20,
    nonRetryableErrorTypes: ['QuotaExceeded', 'ConfigError'],
  },
});

export async function clusterLifecycle(input: ClusterInput): Promise<ClusterState> {
  const { spec } = input;
  const now = () => new Date().toISOString();
  const state: ClusterState = input.carried ?? {
    tenant: spec.tenant,
    name: spec.name,
    engine: spec.engine,
    phase: 'provisioning',
    size: spec.size,
    createdAt: now(),
    lastTouchedAt: now(),
    touches: 0,
    continuations: 0,
  };
  // Executions started before these patches ran without cleanup on cancel (replay keeps them so).
  const stopOnCancel = patched('cluster-stop-on-cancel-v1');
  let touched = false;
  let terminateReason: string | undefined = input.pendingTerminate;
  setHandler(clusterStateQuery, () => state);
  setHandler(touchSignal, () => {
    state.lastTouchedAt = now();
    state.touches++;
    touched = true;
  });
  setHandler(terminateSignal, ({ reason }) => {
    terminateReason ??= reason ?? 'terminate requested';
  });
  setHandler(
    resizeUpdate,
    async (size) => {
      const providerId = state.providerId;
      if (!providerId)
        throw ApplicationFailure.create({
          type: 'ClusterNotProvisioned',
          message: `cluster ${spec.name} has no provider id yet; resize it once it is ready`,
        });
      await acts.resizeCluster(spec, providerId, size);
      state.size = size;
      state.lastTouchedAt = now();
      touched = true;
      return state;
    },
    {
      validator: (size: ClusterSize) => {
        if (state.phase !== 'ready')
          throw new Error(`cluster ${spec.name} is ${state.phase}; resize it once it is ready`);
        if (!(size.instances >= 1)) throw new Error('a cluster needs at least 1 instance');
      },
    },
  );
  const details = () =>
    setCurrentDetails(
      `**${spec.name}** (${spec.engine}) — ${state.phase}, ${state.size.instances}×${state.size.cores} cores, touched ${state.lastTouchedAt}`,
    );

  try {
    if (state.phase === 'provisioning') {
      details();
      try {
        // Provisioning finishes even if the workflow is cancelled meanwhile, so what it made is known and stopped.
        const provision = () => acts.provisionCluster(spec, workflowInfo().workflowId);
        const p = stopOnCancel ? await CancellationScope.nonCancellable(provision) : await provision();
        state.providerId = p.providerId;
        state.endpoint = p.endpoint;
        for (;;) {
          const s = await acts.clusterStatus(spec, p.providerId);
          if (s.phase === 'ready') break;
          if (s.phase === 'failed')
            throw ApplicationFailure.create({
              type: 'ClusterFailed',
              nonRetryable: true,
              message: `cluster ${spec.name} failed to start: ${s.message ?? 'no reason given'}`,
            });
          if (terminateReason) break;
          await sleep(spec.pollMs ?? 10_000);
        }
        state.phase = 'ready';
      } catch (err) {
        if (stopOnCancel && isCancellation(err)) throw err;
        state.phase = 'failed';
        state.error = err instanceof Error ? err.message : String(err);
        if (state.providerId) await acts.terminateCluster(spec, state.providerId);
        throw err;
      }
    }
    details();

    const created = Date.parse(state.createdAt);
    const canAfter = spec.continueAsNewAfterEvents ?? 2_000;
    for (;;) {
      if (terminateReason) break;
      const idleAt = Date.parse(state.lastTouchedAt) + spec.idleTimeoutMs;
      const lifeAt = created + spec.maxLifetimeMs;
      const t = Date.now();
      if (t >= lifeAt) {
        terminateReason = `reached its maximum lifetime (${spec.maxLifetimeMs} ms)`;
        break;
      }
      if (t >= idleAt) {
        terminateReason = `idle for ${spec.idleTimeoutMs} ms`;
        break;
      }
      const info = workflowInfo();
      if (info.continueAsNewSuggested || info.historyLength >= canAfter) {
        await condition(allHandlersFinished);
        // A terminate that arrived while handlers finished is acted on here, not dropped by the new execution.
        if (terminateReason !== undefined && patched('cluster-terminate-before-continue-v1')) break;
        state.continuations++;
        return await continueAsNew<typeof clusterLifecycle>({
          spec,
          carried: state,
          pendingTerminate: terminateReason,
        });
      }
      touched = false;
      // A touch or terminate wakes the loop; otherwise the earlier deadline does.
      await condition(() => touched || terminateReason !== undefined, Math.min(idleAt, lifeAt) - t);
    }

    await condition(allHandlersFinished);
    state.phase = 'terminating';
    state.terminationReason = terminateReason;
    details();
    if (state.providerId) await acts.terminateCluster(spec, state.providerId);
    state.phase = 'terminated';
    state.terminatedAt = now();
    details();
    return state;
  } catch (err) {
    if (!stopOnCancel || !isCancellation(err)) throw err;
    // Cancelled: the cluster must not outlive its workflow. Stop it whatever phase it reached, then end cancelled.
    await CancellationScope.nonCancellable(async () => {
      state.phase = 'terminating';
      state.terminationReason = 'the cluster workflow was cancelled';
      details();
      if (state.providerId) await acts.terminateCluster(spec, state.providerId);
      state.phase = 'terminated';
      state.terminatedAt = now();
      details();
    });
    throw err;
  }
}
