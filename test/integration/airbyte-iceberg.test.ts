/**
 * Airbyte syncs into Iceberg: a connection whose destination is Airbyte's S3 Data Lake
 * (Iceberg through its own catalog, into the tenant's warehouse) has its streams' tables
 * registered in Strata's catalog after each successful sync, from the metadata file the
 * destination wrote, and recorded as bronze dataset versions with lineage from the source.
 * iceberg-go (not Strata's code) then reads them through Strata's REST catalog. A destination
 * writing outside the tenant's warehouse is reported and nothing is registered. A stream table
 * the task declares in `outputs` is write-audit-published: staged on the run's audit branch,
 * checked, and only then published to `main`, or kept staged as rejected.
 */
import type { FastifyInstance } from 'fastify';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { registerSyncTables } from '../../activities/airbyte/iceberg.js';
import { forTenant } from '../../activities/lake/open.js';
import type { ActivityDeps } from '../../activities/index.js';
import type { RunState } from '../../schemas/run.js';
import type { TableMetadata } from '../../activities/iceberg/metadata.js';
import { AuditStore, auditBranch } from '../../store/iceberg-audit.js';
import { IcebergStore } from '../../store/iceberg.js';
import { createKey } from '../../store/keys.js';
import { AirbyteDouble, SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { withExtWorker } from '../fakes/ext-stack.js';
import { IcebergDestination } from '../fakes/iceberg-destination.js';
import { stackApi } from '../harness/api.js';
import { jsonLines, readStackIceberg } from '../harness/iceberg-reader.js';
import { datasetRows } from '../harness/duck.js';
import { spec } from '../harness/specs.js';
import { testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let airbyte: AirbyteDouble;
let app: FastifyInstance;
let api: string;
let readerKey: string;
let deps: Partial<ActivityDeps>;
let client: AirbyteClient;
let workspaceId: string;
let sourceId: string;
const lineageFile = path.join(inject('scratchDir'), `airbyte-iceberg-${process.pid}.jsonl`);
const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };

beforeAll(async () => {
  [stack, airbyte] = await Promise.all([
    testStack('airbyte-iceberg', { lake: 's3', lineageFile }),
    AirbyteDouble.start(),
  ]);
  airbyte.scenario = () => SYNC_SCENARIOS.success(100);
  client = new AirbyteClient({
    baseUrl: airbyte.baseUrl,
    clientId: airbyte.clientId,
    clientSecret: airbyte.clientSecret,
  });
  workspaceId = airbyte.addWorkspace();
  deps = { lake: stack.lake, s3: stack.s3, airbyte: client, airbyteWorkspaces: { [stack.tenant]: workspaceId } };
  sourceId = (
    await client.createSource({
      name: 'shop',
      workspaceId,
      configuration: { sourceType: 'postgres', host: 'db', password: 'not-a-secret' },
    })
  ).sourceId;
  ({ app, base: api } = await stackApi(stack));
  readerKey = (await createKey(stack.db, stack.tenant, 'operator', 'airbyte-reader')).secret;
}, 600_000);
afterAll(async () => {
  await app?.close();
  await airbyte?.close();
  await stack?.close();
});

/** An S3 Data Lake destination (Nessie catalog, namespace raw) writing under `warehouseKey` of the lake, and a connection to it. */
async function icebergConnection(warehouseKey: string, streams: string[]) {
  const dest = await client.createDestination({
    name: 'lake',
    workspaceId,
    configuration: {
      destinationType: 's3-data-lake',
      access_key_id: 'AKIDEXAMPLE',
      secret_access_key: 'not-a-secret',
      s3_bucket_name: 'lake',
      s3_bucket_region: 'us-east-1',
      warehouse_location: stack.lake!.store.uri(warehouseKey),
      main_branch_name: 'main',
      catalog_type: { catalog_type: 'NESSIE', server_uri: 'http://nessie:19120/api/v1', namespace: 'raw' },
    },
  });
  const conn = await client.createConnection({
    sourceId,
    destinationId: dest.destinationId,
    namespaceDefinition: 'destination',
    configurations: { streams: streams.map((name) => ({ name, syncMode: 'incremental_append' })) },
  });
  return { connectionId: conn.connectionId, destination: new IcebergDestination(stack.lake!.store, warehouseKey) };
}

/** One run of a pipeline with one airbyte.sync task, on a worker wired to the stack's lake and the Airbyte double. */
function sync(id: string, connectionId: string, extra: Record<string, unknown> = {}): Promise<RunState> {
  return withExtWorker(stack, deps, () =>
    stack.runToEnd(spec({ id, tasks: [{ id: 'ingest', kind: 'airbyte.sync', connectionId, poll: FAST, ...extra }] })),
  );
}

const scan = async (table: string) =>
  jsonLines((await readStackIceberg(stack, `${api}/iceberg`, readerKey, ['scan', '-table', table])).stdout)
    .map((r) => r.id as number)
    .sort((a, b) => a - b);

const registered = async (ns: string[], name: string) => new IcebergStore(stack.db).table(stack.tenant, ns, name);

describe('Airbyte syncs into Iceberg', () => {
  it("registers each stream's table from the metadata the destination wrote, as bronze versions iceberg-go reads through Strata", async () => {
    const { connectionId, destination } = await icebergConnection(`${stack.tenant}/airbyte`, ['orders', 'Customers']);
    let syncNo = 0;
    airbyte.onSync = async () => {
      syncNo++;
      if (syncNo === 1) {
        await destination.append('raw', 'orders', [
          { id: 1, name: 'a' },
          { id: 2, name: 'b' },
        ]);
        await destination.append('raw', 'customers', [{ id: 10, name: 'c' }]);
        // A table of another namespace in the same warehouse is not this connection's: left alone.
        await destination.append('other', 'orders', [{ id: 99, name: 'x' }]);
      } else if (syncNo === 2) await destination.append('raw', 'orders', [{ id: 3, name: 'c' }]);
    };

    const first = await sync('ab-ice-1', connectionId);
    expect(airbyte.syncErrors).toEqual([]);
    expect(first.status).toBe('success');
    const out1 = first.tasks.ingest.output as {
      outputs: { dataset: string; namespace: string; version: number; rowCount: number }[];
    };
    expect(out1.outputs.map((o) => [o.dataset, o.namespace, o.version, o.rowCount])).toEqual([
      ['bronze.customers', 'raw', 1, 1],
      ['bronze.orders', 'raw', 1, 2],
    ]);
    // Strata's catalog points at the destination's own metadata file (registered, not rewritten).
    const ordersMeta = () => destination.written.filter((k) => k.includes('/raw/orders_'));
    expect((await registered(['bronze', 'raw'], 'orders'))?.metadataLocation).toBe(
      stack.lake!.store.uri(ordersMeta()[0]),
    );
    expect(await registered(['bronze', 'other'], 'orders')).toBeUndefined();
    expect(await scan('bronze.raw.orders')).toEqual([1, 2]);
    expect(await scan('bronze.raw.customers')).toEqual([10]);
    const v1 = await stack.lake!.catalog.version(
      stack.tenant,
      { layer: 'bronze', namespace: 'raw', name: 'orders' },
      1,
    );
    expect(v1).toMatchObject({ status: 'committed', rowCount: 2, taskId: 'ingest' });
    expect(v1!.schema.map((c) => [c.name, c.type])).toEqual([
      ['id', 'BIGINT'],
      ['name', 'VARCHAR'],
    ]);
    expect(v1!.files).toHaveLength(1);
    expect(v1!.files[0]).toMatch(/^airbyte\/raw\/orders_[0-9a-f]{32}\/data\/.*\.parquet$/);

    // The next sync appends: a new version, the catalog moves to the destination's newer metadata.
    const second = await sync('ab-ice-2', connectionId);
    expect(second.status).toBe('success');
    const out2 = second.tasks.ingest.output as {
      outputs: { dataset: string; version: number; rowCount: number }[];
      skipped: string[];
    };
    expect(out2.outputs.map((o) => [o.dataset, o.version, o.rowCount])).toEqual([['bronze.orders', 2, 3]]);
    expect(out2.skipped).toEqual([expect.stringMatching(/^raw\.customers: nothing new since /)]);
    expect((await registered(['bronze', 'raw'], 'orders'))?.metadataLocation).toBe(
      stack.lake!.store.uri(ordersMeta()[1]),
    );
    expect(await scan('bronze.raw.orders')).toEqual([1, 2, 3]);

    // Lineage: the sync's OpenLineage COMPLETE names the Airbyte source as input and the registered table as output.
    const events = (await readFile(lineageFile, 'utf8'))
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            eventType: string;
            job: { name: string };
            inputs: { namespace: string; name: string }[];
            outputs: { name: string }[];
          },
      );
    const complete = events.filter((e) => e.eventType === 'COMPLETE' && e.job.name === 'ab-ice-1.ingest');
    expect(complete).toHaveLength(1);
    expect(complete[0].inputs).toEqual([{ namespace: `airbyte:${workspaceId}`, name: `sources/${sourceId}` }]);
    expect(complete[0].outputs.map((o) => o.name).sort()).toEqual(['bronze/raw/customers', 'bronze/raw/orders']);
  });

  it("a destination writing outside the tenant's warehouse is reported, and nothing is registered", async () => {
    // Another tenant's folder of the same lake.
    const { connectionId, destination } = await icebergConnection('someone-else/airbyte', ['events']);
    airbyte.onSync = async () => void (await destination.append('raw', 'events', [{ id: 1, name: 'a' }]));
    const st = await sync('ab-ice-out', connectionId);
    expect(st.status).toBe('success');
    const out = st.tasks.ingest.output as { outputs?: unknown[]; notCatalogued?: string };
    expect(out.outputs).toBeUndefined();
    expect(out.notCatalogued).toMatch(/writes to s3:\/\/.*\/someone-else\/airbyte, outside tenant .*'s warehouse/);
    expect(await registered(['bronze', 'raw'], 'events')).toBeUndefined();
  });

  it('a connection whose destination is not Iceberg syncs as before, with nothing catalogued', async () => {
    const dest = await client.createDestination({
      name: 'pg',
      workspaceId,
      configuration: { destinationType: 'postgres', host: 'db', password: 'not-a-secret' },
    });
    const conn = await client.createConnection({ sourceId, destinationId: dest.destinationId });
    airbyte.onSync = undefined;
    const st = await sync('ab-pg', conn.connectionId);
    expect(st.status).toBe('success');
    expect(st.tasks.ingest.output).toMatchObject({ engine: 'airbyte', rowsSynced: airbyte.rowsPerSync });
    expect(st.tasks.ingest.output).not.toHaveProperty('outputs');
    expect(st.tasks.ingest.output).not.toHaveProperty('notCatalogued');
  });

  it('a declared output is audited before readers see it: passing checks publish, a failing check keeps main where it was', async () => {
    const { connectionId, destination } = await icebergConnection(`${stack.tenant}/airbyte-wap`, [
      'payments',
      'refunds',
    ]);
    const outputs = [{ dataset: 'bronze.payments', namespace: 'raw', checks: [{ range: { column: 'id', max: 100 } }] }];
    const payments = { layer: 'bronze' as const, namespace: 'raw', name: 'payments' };
    const table = async () => (await registered(['bronze', 'raw'], 'payments'))!;
    const metaOf = async () => (await table()).metadata as unknown as TableMetadata;
    let batch: { payments?: { id: number; name: string }[]; refunds?: { id: number; name: string }[] } = {};
    airbyte.onSync = async () => {
      if (batch.payments) await destination.append('raw', 'payments', batch.payments);
      if (batch.refunds) await destination.append('raw', 'refunds', batch.refunds);
    };
    const destSnapshot = async () => {
      const keys = destination.written.filter((k) => k.includes('/raw/payments_'));
      const m = JSON.parse(String(await stack.lake!.store.getBytes(keys[keys.length - 1]))) as {
        'current-snapshot-id': number;
      };
      return String(m['current-snapshot-id']);
    };

    // 1. Good rows: staged, audited, published. Strata's catalog holds its own metadata file (not the destination's).
    batch = {
      payments: [
        { id: 1, name: 'a' },
        { id: 2, name: 'b' },
      ],
      refunds: [{ id: 1, name: 'r' }],
    };
    const first = await sync('ab-wap-1', connectionId, { outputs });
    expect(first.status).toBe('success');
    const out1 = first.tasks.ingest.output as { outputs: { dataset: string; version: number; rowCount: number }[] };
    expect(out1.outputs.map((o) => [o.dataset, o.version, o.rowCount])).toEqual([
      ['bronze.payments', 1, 2],
      ['bronze.refunds', 1, 1],
    ]);
    const s1 = await destSnapshot();
    let meta = await metaOf();
    expect(String(meta.refs.main['snapshot-id'])).toBe(s1);
    expect((await table()).metadataLocation).toMatch(
      /\/raw\/payments_[0-9a-f]{32}\/metadata\/\d{5}-strata-.*\.metadata\.json$/,
    );
    const branch1 = Object.keys(meta.refs).find((r) => r.startsWith('audit-'))!;
    expect(meta.snapshots.find((s) => String(s['snapshot-id']) === s1)!.summary).toMatchObject({
      'strata.status': 'published',
      'strata.version': '1',
    });
    expect(
      (await new AuditStore(stack.db).audit(stack.tenant, { namespace: ['bronze', 'raw'], name: 'payments' }, branch1))
        ?.status,
    ).toBe('published');
    expect(await scan('bronze.raw.payments')).toEqual([1, 2]);
    expect((await datasetRows(stack, payments)).map((r) => Number(r.id)).sort()).toEqual([1, 2]);
    // The undeclared stream is registered as written (the destination's own metadata file).
    expect((await registered(['bronze', 'raw'], 'refunds'))?.metadataLocation).not.toMatch(/-strata-/);

    // 2. A row the check refuses: the snapshot stays staged on the run's branch, rejected with its failing
    // rows; main (what readers see) stays at the first sync; the task fails naming the check.
    batch = { payments: [{ id: 500, name: 'x' }], refunds: [{ id: 2, name: 's' }] };
    const second = await sync('ab-wap-2', connectionId, { outputs });
    expect(second.status).toBe('failed');
    expect(second.tasks.ingest.error).toMatch(/quality gate failed.*bronze\.raw\.payments@2 range\(id\)/);
    const s2 = await destSnapshot();
    meta = await metaOf();
    expect(String(meta.refs.main['snapshot-id'])).toBe(s1);
    expect(String(meta['current-snapshot-id'])).toBe(s1);
    // The run's audit branch (audit-{run}-{task}) holds the rejected snapshot.
    expect(String(meta.refs[auditBranch(second.workflowId, 'ingest')]['snapshot-id'])).toBe(s2);
    expect(meta.snapshots.find((s) => String(s['snapshot-id']) === s2)!.summary['strata.status']).toBe('rejected');
    const v2 = await stack.lake!.catalog.version(stack.tenant, payments, 2);
    expect(v2?.status).toBe('rejected');
    expect(v2?.checks[0]).toMatchObject({ name: 'range(id)', passed: false, failing: 1 });
    expect(v2?.checks[0].sample).toEqual([expect.objectContaining({ id: '500' })]);
    expect((await stack.lake!.catalog.current(stack.tenant, payments))?.version).toBe(1);
    expect(await scan('bronze.raw.payments')).toEqual([1, 2]);
    expect((await datasetRows(stack, payments)).map((r) => Number(r.id)).sort()).toEqual([1, 2]);
    // The other stream of the same sync was registered as written.
    expect(await scan('bronze.raw.refunds')).toEqual([1, 2]);

    // 3. Good rows next, but the destination appended them onto the rejected snapshot: the table's
    // snapshot still holds row 500, so the audit (over the whole snapshot) rejects it again.
    batch = { payments: [{ id: 3, name: 'c' }] };
    const third = await sync('ab-wap-3', connectionId, { outputs });
    expect(third.status).toBe('failed');
    expect(third.tasks.ingest.error).toMatch(/bronze\.raw\.payments@3 range\(id\)/);
    expect(String((await metaOf()).refs.main['snapshot-id'])).toBe(s1);
    expect(await scan('bronze.raw.payments')).toEqual([1, 2]);

    // 4. A sync with nothing new for the stream audits nothing again.
    batch = { refunds: [{ id: 3, name: 't' }] };
    const fourth = await sync('ab-wap-4', connectionId, { outputs });
    expect(fourth.status).toBe('success');
    expect((fourth.tasks.ingest.output as { skipped: string[] }).skipped).toContain(
      `raw.payments: nothing new since snapshot ${await destSnapshot()} (rejected already)`,
    );
  });

  it("a declared output that is not one of the connection's stream tables fails the task before the sync", async () => {
    const { connectionId } = await icebergConnection(`${stack.tenant}/airbyte-bad`, ['invoices']);
    let synced = false;
    airbyte.onSync = async () => void (synced = true);
    const wrongName = await sync('ab-wap-bad', connectionId, {
      outputs: [{ dataset: 'bronze.orders', namespace: 'raw' }],
    });
    expect(wrongName.status).toBe('failed');
    expect(wrongName.tasks.ingest.error).toMatch(
      /outputs: bronze\.orders \(namespace raw\) is not a table connection .* streams land in \(invoices\): name one of those/,
    );
    const wrongNs = await sync('ab-wap-bad-ns', connectionId, { outputs: ['bronze.invoices'] });
    expect(wrongNs.tasks.ingest.error).toMatch(/streams land in namespace raw: set "namespace: raw"/);
    expect(synced).toBe(false);
  });

  it('a retried registration stages nothing twice and records one version, passing or rejected', async () => {
    const { connectionId, destination } = await icebergConnection(`${stack.tenant}/airbyte-retry`, ['ledger']);
    const connection = await client.getConnection(connectionId);
    const dest = await client.getDestination(connection.destinationId);
    const ledger = { layer: 'bronze' as const, namespace: 'raw', name: 'ledger' };
    const register = (run: string) =>
      registerSyncTables(forTenant(stack.lake!, stack.tenant), {
        run: {
          runId: run,
          workflowId: `pipeline/${stack.tenant}/retry/${run}`,
          pipelineId: 'retry',
          tenant: stack.tenant,
          trigger: 'manual',
          logicalDate: '2026-01-01',
        },
        taskId: 'ingest',
        connection,
        destination: dest,
        source: { namespace: `airbyte:${workspaceId}`, name: `sources/${connection.sourceId}` },
        outputs: [
          { id: ledger, checks: [{ range: { column: 'id', max: 100 }, severity: 'error' }], failingRowsLimit: 20 },
        ],
        scratch: path.join(inject('scratchDir'), `ab-retry-${run}`),
      });
    const location = async () => (await registered(['bronze', 'raw'], 'ledger'))?.metadataLocation;

    await destination.append('raw', 'ledger', [{ id: 1, name: 'a' }]);
    const first = await register('r1');
    const at = await location();
    const again = await register('r1');
    expect(again.versions.map((v) => [v.version, v.status])).toEqual([[1, 'committed']]);
    expect(first.versions.map((v) => v.version)).toEqual([1]);
    expect(await location()).toBe(at);

    await destination.append('raw', 'ledger', [{ id: 200, name: 'b' }]);
    await expect(register('r2')).rejects.toMatchObject({ type: 'QualityGateFailed' });
    const rejectedAt = await location();
    await expect(register('r2')).rejects.toMatchObject({ type: 'QualityGateFailed' });
    expect(await location()).toBe(rejectedAt);
    expect((await stack.lake!.catalog.versions(stack.tenant, ledger)).map((v) => [v.version, v.status]).sort()).toEqual(
      [
        [1, 'committed'],
        [2, 'rejected'],
      ],
    );
    expect(await scan('bronze.raw.ledger')).toEqual([1]);
  });

  it('an attempt that dies between staging and the audit leaves the snapshot staged; the retry audits that staging and publishes it once', async () => {
    const { connectionId, destination } = await icebergConnection(`${stack.tenant}/airbyte-crash`, ['journal']);
    const connection = await client.getConnection(connectionId);
    const dest = await client.getDestination(connection.destinationId);
    const journal = { layer: 'bronze' as const, namespace: 'raw', name: 'journal' };
    const run = {
      runId: 'c1',
      workflowId: `pipeline/${stack.tenant}/crash/c1`,
      pipelineId: 'crash',
      tenant: stack.tenant,
      trigger: 'manual' as const,
      logicalDate: '2026-01-01',
    };
    const register = (scratch: string) =>
      registerSyncTables(forTenant(stack.lake!, stack.tenant), {
        run,
        taskId: 'ingest',
        connection,
        destination: dest,
        source: { namespace: `airbyte:${workspaceId}`, name: `sources/${connection.sourceId}` },
        outputs: [{ id: journal, checks: [{ not_null: 'name', severity: 'error' }], failingRowsLimit: 20 }],
        scratch,
      });
    await destination.append('raw', 'journal', [
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
    ]);
    // The first attempt stages, then cannot open the audit's scratch folder (a file is in its
    // way): it stops where a worker killed after staging would, with nothing audited.
    const blocker = path.join(inject('scratchDir'), `ab-crash-blocker-${process.pid}`);
    await writeFile(blocker, '');
    await expect(register(path.join(blocker, 'attempt-1'))).rejects.toThrow(/ENOTDIR|not a directory/);
    const branch = auditBranch(run.workflowId, 'ingest');
    const staged = await registered(['bronze', 'raw'], 'journal');
    const stagedMeta = staged!.metadata as unknown as TableMetadata;
    const snap = String(stagedMeta.refs[branch]['snapshot-id']);
    expect(stagedMeta.refs.main).toBeUndefined();
    expect(stagedMeta.snapshots.find((x) => String(x['snapshot-id']) === snap)!.summary['strata.status']).toBe(
      'staged',
    );
    expect(await stack.lake!.catalog.versions(stack.tenant, journal)).toEqual([]);

    // The retry finds the staging, does not write another, audits it and publishes it.
    const retried = await register(path.join(inject('scratchDir'), `ab-crash-${process.pid}`));
    expect(retried.versions.map((v) => [v.version, v.status])).toEqual([[1, 'committed']]);
    const after = (await registered(['bronze', 'raw'], 'journal'))!;
    const meta = after.metadata as unknown as TableMetadata;
    expect(String(meta.refs.main['snapshot-id'])).toBe(snap);
    // The published metadata follows the first attempt's staging directly.
    expect(meta['metadata-log'].at(-1)!['metadata-file']).toBe(staged!.metadataLocation);
    expect(meta['metadata-log'].filter((m) => m['metadata-file'].includes('-strata-'))).toHaveLength(1);
    expect(meta.snapshots.find((x) => String(x['snapshot-id']) === snap)!.summary['strata.status']).toBe('published');
    expect((await stack.lake!.catalog.versions(stack.tenant, journal)).map((v) => v.version)).toEqual([1]);
    expect(await scan('bronze.raw.journal')).toEqual([1, 2]);
    // A third attempt (the activity retried once more after a lost reply) changes nothing.
    const third = await register(path.join(inject('scratchDir'), `ab-crash-${process.pid}`));
    expect(third.versions.map((v) => v.version)).toEqual([1]);
    expect((await registered(['bronze', 'raw'], 'journal'))!.metadataLocation).toBe(after.metadataLocation);
  });
});
