import type { Channels } from '../activities/notify/channels.js';
import type { Client } from '@temporalio/client';
import type { AirbyteClient } from '../activities/airbyte/client.js';
import type { LakeDeps } from '../activities/lake/engine.js';
import type { SparkK8sClient } from '../activities/spark-k8s/client.js';
import type { Config } from '../schemas/config.js';
import type { Db } from '../store/db.js';
import type { cachedKeyLookup } from '../store/keys.js';
import type { Metrics } from './system.js';
import type { ClustersService } from '../client/clusters.js';
import type { ReconciliationsService } from '../client/reconciliations.js';
import type { RunsService } from '../client/runs.js';
import type { SchedulesService } from '../client/schedules.js';
import type { QueriesService } from './queries-service.js';

export interface ApiContext {
  db: Db;
  client: Client;
  runs: RunsService;
  schedules: SchedulesService;
  reconciliations: ReconciliationsService;
  clusters: ClustersService;
  config: Config;
  metrics: Metrics;
  keyLookup: ReturnType<typeof cachedKeyLookup>;
  /** The lake catalog, when the API runs with one. */
  lake?: LakeDeps;
  /** Kubernetes access for live Spark driver logs, when the API has a kubeconfig. */
  spark?: SparkK8sClient;
  /** Airbyte, when the API runs with AIRBYTE_URL (/api/v1/ingestion answers 503 without). */
  airbyte?: AirbyteClient;
  /** Read-only statements of the query API (run in this process). */
  queries: QueriesService;
  /** Tenant → Airbyte workspace id, from STRATA_AIRBYTE_WORKSPACES. */
  airbyteWorkspaces: Record<string, string>;
  /** Notification channels (STRATA_NOTIFY_*), for checking the channels specs and schedules name. */
  notifyChannels: Channels;
}
