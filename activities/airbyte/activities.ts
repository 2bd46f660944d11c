/**
 * Airbyte syncs as Temporal activities: trigger (adopting a running sync), poll, cancel, and
 * after a sync into Iceberg, register its streams' tables as datasets (./iceberg.ts).
 */
import type { ExternalJobInput, JobLogs, JobRef, JobStatus } from '../../schemas/external.js';
import type { TaskOutput } from '../../schemas/run.js';
import { engineJobActivities, type JobLedgerDeps } from '../core/job.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { versionOutput, type LakeDeps } from '../lake/engine.js';
import { forTenant } from '../lake/open.js';
import { attemptTag, scratchDir } from '../lake/activities.js';
import { jobOutputs } from '../iceberg/audit.js';
import {
  AIRBYTE_TERMINAL,
  AirbyteError,
  type AirbyteClient,
  type ConnectionResponse,
  type DestinationResponse,
} from './client.js';
import { checkDeclaredOutputs, registerSyncTables } from './iceberg.js';

export interface AirbyteDeps extends JobLedgerDeps {
  airbyte?: AirbyteClient;
  /** Tenant → its Airbyte workspace (STRATA_AIRBYTE_WORKSPACES): a tenant syncs only its workspace's connections. */
  airbyteWorkspaces?: Record<string, string>;
  /** The lake, where the tables of a sync into Iceberg are catalogued. */
  lake?: LakeDeps;
}

/** A sync's job id: a reference without one was not made by airbyteSubmit. */
function jobIdOf(ref: JobRef): string {
  if (!ref.id)
    throw new NonRetryableError(`Airbyte job ${ref.name} of connection ${ref.scope} has no job id`, 'TaskError');
  return ref.id;
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
  const workspaceOf = (tenant: string) => {
    const ws =
      deps.airbyteWorkspaces && Object.hasOwn(deps.airbyteWorkspaces, tenant)
        ? deps.airbyteWorkspaces[tenant]
        : undefined;
    if (!ws)
      throw new NonRetryableError(
        `tenant ${tenant} has no Airbyte workspace, so its syncs cannot be checked: add ${tenant}=<workspace uuid> to STRATA_AIRBYTE_WORKSPACES on the worker`,
        'ConfigError',
      );
    return ws;
  };
  /** The task's connection, checked to be in the tenant's workspace (another workspace's answers like an unknown one). */
  const ownConnection = async (input: ExternalJobInput) => {
    const connectionId = String(input.task.connectionId);
    const { tenant } = input.run;
    const ws = workspaceOf(tenant);
    const conn = await client().getConnection(connectionId);
    if (conn.workspaceId?.toLowerCase() !== ws.toLowerCase())
      throw new NonRetryableError(
        `task ${input.task.id}: Airbyte connection ${connectionId} is not in tenant ${tenant}'s workspace: use a connection of your workspace (GET /api/v1/ingestion/connections lists them)`,
        'ConnectionNotOwned',
      );
    return conn;
  };
  /** A destination is read only as its connection's, in the same workspace. */
  const sameWorkspace = (conn: ConnectionResponse, destination: DestinationResponse) => {
    if (destination.workspaceId?.toLowerCase() !== conn.workspaceId.toLowerCase())
      throw new NonRetryableError(
        `Airbyte destination ${conn.destinationId} is not in connection ${conn.connectionId}'s workspace`,
        'ConnectionNotOwned',
      );
  };
  const ownDestination = async (conn: ConnectionResponse) => {
    const destination = await client().getDestination(conn.destinationId);
    sameWorkspace(conn, destination);
    return destination;
  };
  const ledger = { engine: 'airbyte', db: deps.db } as const;
  return engineJobActivities(ledger, {
    async airbyteSubmit(input: ExternalJobInput): Promise<JobRef> {
      const connectionId = String(input.task.connectionId);
      workspaceOf(input.run.tenant);
      try {
        const conn = await ownConnection(input);
        // Declared outputs must be tables this connection's streams land in: checked before the sync runs.
        const outputs = jobOutputs(input.task);
        if (outputs.length) checkDeclaredOutputs(input.task.id, outputs, conn, await ownDestination(conn));
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
        const job = await client().getJob(jobIdOf(ref));
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
    /**
     * After a successful sync: when the connection's destination writes Iceberg tables into the
     * tenant's warehouse, register them in Strata's catalog as datasets (bronze.{table} in the
     * destination's namespace) from the metadata the destination wrote. Other destinations: nothing.
     */
    async airbyteRegisterStreams(
      input: ExternalJobInput,
    ): Promise<{ outputs: TaskOutput[]; skipped: string[]; reason?: string }> {
      try {
        const conn = await ownConnection(input);
        const outputs = jobOutputs(input.task);
        let destination;
        try {
          destination = await client().getDestination(conn.destinationId);
        } catch (e) {
          // The sync succeeded; a destination that cannot be read (deleted since, no permission) only means nothing is catalogued.
          if (e instanceof AirbyteError && !e.retryable && e.status !== 401)
            return {
              outputs: [],
              skipped: [],
              reason: `destination ${conn.destinationId} of connection ${conn.connectionId} cannot be read (${e.status}), so its tables are not catalogued`,
            };
          throw e;
        }
        sameWorkspace(conn, destination);
        if (!deps.lake) return { outputs: [], skipped: [], reason: 'this worker has no lake catalog (metastore)' };
        const lake = forTenant(deps.lake, input.run.tenant);
        const r = await registerSyncTables(lake, {
          run: input.run,
          taskId: input.task.id,
          connection: conn,
          destination,
          source: { namespace: `airbyte:${conn.workspaceId}`, name: `sources/${conn.sourceId}` },
          outputs,
          scratch: scratchDir(lake, attemptTag()),
        });
        return {
          outputs: r.versions.map((v) => versionOutput(v, lake.store)),
          skipped: r.skipped,
          ...(r.reason ? { reason: r.reason } : {}),
        };
      } catch (e) {
        return classify(e);
      }
    },
    async airbyteCancel(ref: JobRef): Promise<{ result: string }> {
      try {
        return { result: await client().cancelJob(jobIdOf(ref)) };
      } catch (e) {
        return classify(e);
      }
    },
  });
}
