/** Messages of the cluster entity workflow, shared with the workflows that use clusters. */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ClusterSize, ClusterState } from '../schemas/cluster.js';

export { clusterWorkflowId, type ClusterInput, type ClusterSize, type ClusterSpec, type ClusterState } from '../schemas/cluster.js';

export const touchSignal = defineSignal<[{ by?: string }]>('touch');
export const terminateSignal = defineSignal<[{ reason?: string }]>('terminate');
export const clusterStateQuery = defineQuery<ClusterState>('clusterState');
export const resizeUpdate = defineUpdate<ClusterState, [ClusterSize]>('resize');

