/** Messages of the cluster entity workflow, shared with the workflows that use clusters. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ClusterSize, ClusterState } from '../schemas/cluster.js';

export {
  clusterWorkflowId,
  type ClusterInput,
  type ClusterSize,
  type ClusterSpec,
  type ClusterState,
} from '../schemas/cluster.js';

export const touchSignal = defineSignal<[{ by?: string }]>('touch');
export const terminateSignal = defineSignal<[{ reason?: string }]>('terminate');
export const clusterStateQuery = defineQuery<ClusterState>('clusterState');
export const resizeUpdate = defineUpdate<ClusterState, [ClusterSize]>('resize');

/** A cluster name holding one of its tenant's cluster slots, since `acquiredAt` (ms). */
export interface QuotaHolder {
  name: string;
  acquiredAt: number;
}
export interface ClusterQuotaInput {
  tenant: string;
  holders?: QuotaHolder[];
}
/** Takes a slot for `name` (idempotent per name) or fails when the tenant already holds `max` (its `tier`'s limit). */
export const acquireClusterSlot = defineUpdate<{ holders: string[] }, [{ name: string; max: number; tier?: string }]>(
  'acquireClusterSlot',
);
export const clusterQuotaQuery = defineQuery<QuotaHolder[]>('clusterQuota');
export const clusterQuotaWorkflowId = (tenant: string) => `quota/${tenant}/clusters`;
