/** Airbyte syncs as Temporal activities: trigger (adopting a running sync), poll, cancel. */
import type { ExternalJobInput, JobLogs, JobRef, JobStatus } from '../../schemas/external.js';
import { engineJobActivities, type JobLedgerDeps } from '../core/job.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { AIRBYTE_TERMINAL, AirbyteError, type AirbyteClient } from './client.js';

export interface AirbyteDeps extends JobLedgerDeps {
  airbyte?: AirbyteClient;
  /** Tenant → its Airbyte workspace (STRATA_AIRBYTE_WORKSPACES): a tenant syncs only its workspace's connections. */
  airbyteWorkspaces?: Record<string, string>;
}

function classify(e: unknown): never {
  if (e instanceof AirbyteError && !e.retryable) throw new NonRetryableError(e.message, `Airbyte${e.status}`);
  throw e;
}

export function createAirbyteActivities(deps: AirbyteDeps) {
  const client = () => {
    if (!deps.airbyte)
      throw new NonRetryableError(
        'this worker has no Airbyte client: set AIRBYTE_URL, AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET',
        'ConfigError',
      );
    return deps.airbyte;
  };
  const ledger = { engine: 'airbyte', db: deps.db } as const;
  return engineJobActivities(ledger, {
    async airbyteSubmit(input: ExternalJobInput): Promise<JobRef> {
      const connectionId = String(input.task.connectionId);
      const { tenant } = input.run;
      const ws =
        deps.airbyteWorkspaces && Object.hasOwn(deps.airbyteWorkspaces, tenant)
          ? deps.airbyteWorkspaces[tenant]
          : undefined;
      if (!ws)
        throw new NonRetryableError(
          `tenant ${tenant} has no Airbyte workspace, so its syncs cannot be checked: add ${tenant}=<workspace uuid> to STRATA_AIRBYTE_WORKSPACES on the worker`,
          'ConfigError',
        );
      try {
        // The connection must be in the tenant's workspace; another workspace's answers like an unknown one.
        const conn = await client().getConnection(connectionId);
        if (conn.workspaceId?.toLowerCase() !== ws.toLowerCase())
          throw new NonRetryableError(
            `task ${input.task.id}: Airbyte connection ${connectionId} is not in tenant ${tenant}'s workspace: use a connection of your workspace (GET /api/v1/ingestion/connections lists them)`,
            'ConnectionNotOwned',
          );
        const { job, adopted } = await client().startSync(connectionId);
        return {
          engine: 'airbyte',
          name: `sync-${connectionId}-${job.jobId}`,
          scope: connectionId,
          id: String(job.jobId),
          adopted,
        };
      } catch (e) {
        return classify(e);
      }
    },
    async airbytePoll(ref: JobRef): Promise<JobStatus> {
      try {
        const job = await client().getJob(ref.id!);
        return {
          state: job.status,
          terminal: AIRBYTE_TERMINAL.includes(job.status),
          succeeded: job.status === 'succeeded',
          message:
            job.status === 'failed'
              ? `sync job ${job.jobId} failed; see the job's attempts in Airbyte`
              : job.status === 'cancelled'
                ? `sync job ${job.jobId} was cancelled in Airbyte`
                : undefined,
          facts: {
            jobId: job.jobId,
            rowsSynced: job.rowsSynced ?? 0,
            bytesSynced: job.bytesSynced ?? 0,
            rowCount: job.rowsSynced ?? 0,
            duration: job.duration,
          },
        };
      } catch (e) {
        return classify(e);
      }
    },
    async airbyteLogs(): Promise<JobLogs> {
      return {};
    },
    async airbyteCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        return { result: await client().cancelJob(ref.id!) };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
