export { pipelineRun, stateQuery } from './pipeline.js';
export { reconciliationRun } from './reconciliation.js';
export { externalJob } from './external-job.js';
export { clusterLifecycle } from './cluster.js';
export { clusterQuota } from './cluster-quota.js';
export { notifyRun } from './notify.js';
export { scheduleWatch } from './schedule-watch.js';
export { orphanSweep } from './sweeper.js';
export { tableMaintenance, tableMaintenanceSweep } from './table-maintenance.js';
