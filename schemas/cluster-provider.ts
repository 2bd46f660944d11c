import type { ClusterSize, ClusterSpec } from './cluster.js';

/** The provider side of a cluster (Spark Connect on Kubernetes, or EMR). */
export interface ClusterProvider {
  provisionCluster(spec: ClusterSpec, workflowId: string): Promise<{ providerId: string; endpoint?: string }>;
  clusterStatus(
    spec: ClusterSpec,
    providerId: string,
  ): Promise<{ phase: 'provisioning' | 'ready' | 'failed'; message?: string }>;
  resizeCluster(spec: ClusterSpec, providerId: string, size: ClusterSize): Promise<void>;
  terminateCluster(spec: ClusterSpec, providerId: string): Promise<{ result: string }>;
}

/** Whether a cluster holding a quota slot is still there: its entity workflow running, ended (when), or never started. */
export type ClusterSlotStatus = { state: 'running' } | { state: 'closed'; closedAt: number } | { state: 'missing' };
