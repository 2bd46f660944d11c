/**
 * Write-audit-publish through Strata's Iceberg catalog, with an engine nobody here wrote
 * (apache/iceberg-go, test/iceberg-reader) as the job: with a run's catalog credential its
 * commit to `main` is staged on the run's audit branch; Strata's audit publishes it (a
 * guarded move of `main`) or keeps it staged as rejected with its failing rows; a `main`
 * that moved during the audit is a conflict that says so. A Spark task against the Spark
 * Operator simulator commits the same way. And Strata's own writer writes partitioned
 * tables that iceberg-go prunes by partition.
 */
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import type { V1Secret } from '@kubernetes/client-node';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeContainer, type ManifestEntry, type ManifestFile } from '../../activities/iceberg/avro.js';
import { CATALOG_TOKEN_FROM_S3, catalogTokenKey, TENANT_TAG } from '../../activities/emr/activities.js';
import { auditOutputs, issueCatalogAccess, SPARK_CATALOG_TOKEN_CONF } from '../../activities/iceberg/audit.js';
import type { TableMetadata } from '../../activities/iceberg/metadata.js';
import { fixedDecimal } from '../../activities/iceberg/stats.js';
import { keyOf } from '../../activities/iceberg/writer.js';
import { decimalBytes } from '../../activities/iceberg/stats.js';
import { forTenant } from '../../activities/lake/open.js';
import { SparkK8sClient } from '../../activities/spark-k8s/client.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { parseJson } from '../../schemas/json64.js';
import type { RunContext, RunState } from '../../schemas/run.js';
import { AuditStore, auditBranch } from '../../store/iceberg-audit.js';
import { IcebergStore } from '../../store/iceberg.js';
import { createKey } from '../../store/keys.js';
import { EmrDouble } from '../fakes/emr-double.js';
import { emrClientOf, withExtWorker } from '../fakes/ext-stack.js';
import { SparkOperatorSim } from '../fakes/spark-operator-sim.js';
import { stackApi } from '../harness/api.js';
import { jsonLines, readStackIceberg, runIcebergReader } from '../harness/iceberg-reader.js';
import { spec } from '../harness/specs.js';
import { datasetRows } from '../harness/duck.js';
import { harnessS3, harnessS3Client, testStack, type TestStack } from '../harness/temporal.js';

let stack: TestStack;
let app: FastifyInstance;
let api: string;
let writerKey: string;

beforeAll(async () => {
  stack = await testStack('iceberg-wap', { lake: 's3' });
  ({ app, base: api } = await stackApi(stack));
  writerKey = (await createKey(stack.db, stack.tenant, 'operator', 'wap-writer')).secret;
}, 600_000);
afterAll(async () => {
  await app?.close();
  await stack?.close();
});

const ctx = (run: string): RunContext => ({
  runId: run,
  workflowId: `pipeline/${stack.tenant}/wap/${run}`,
  pipelineId: 'wap',
  tenant: stack.tenant,
  trigger: 'manual',
  logicalDate: '2026-01-01',
});

const task = (checks: unknown[] = [{ not_null: 'name' }], dataset = 'silver.events') => ({
  id: 'load',
  outputs: [{ dataset, checks }],
});

/** iceberg-go as the job: the token is all it has of Strata (plus S3 keys, as a job's s3Secret gives it). */
const engine = (args: string[], token: string) => readStackIceberg(stack, `${api}/iceberg`, token, args);
/** Scanned rows by id (a table partitioned by name is read file by file, in no set order). */
const rows = (r: { stdout: string }) =>
  (jsonLines(r.stdout) as { id: number; name: string | null }[]).sort((a, b) => a.id - b.id);

async function table(name = 'events', ns = ['silver']): Promise<TableMetadata> {
  return (await new IcebergStore(stack.db).table(stack.tenant, ns, name))!.metadata as unknown as TableMetadata;
}
const lake = () => forTenant(stack.lake!, stack.tenant);
const access = (run: string, t = task()) =>
  issueCatalogAccess(stack.lake!, { uri: `${api}/iceberg`, run: ctx(run), task: t, ttlMs: 600_000 }).then((a) => a!);
const audit = (run: string, t = task()) =>
  auditOutputs(lake(), { run: ctx(run), task: t, scratch: `${inject('scratchDir')}/wap-${run}` });

describe('write-audit-publish through the catalog', () => {
  it("a job's commit to main is staged on its audit branch; the audit publishes it and only then main moves", async () => {
    const a = await access('r1');
    expect(a.branch).toBe(auditBranch(ctx('r1').workflowId, 'load'));
    const out = parseJson<{ 'snapshot-id': number }>(
      (
        await engine(
          [
            'append',
            '-create',
            '-table',
            'silver.events',
            '-rows',
            JSON.stringify([
              { id: 1, name: 'a' },
              { id: 2, name: 'b' },
            ]),
          ],
          a.token,
        )
      ).stdout,
    );
    let meta = await table();
    // What readers see has not moved: no main yet, the snapshot is on the branch.
    expect(meta.refs.main).toBeUndefined();
    expect(String(meta.refs[a.branch]['snapshot-id'])).toBe(String(out['snapshot-id']));
    const staged = meta.snapshots.find((s) => String(s['snapshot-id']) === String(out['snapshot-id']))!;
    expect(staged.summary).toMatchObject({ 'strata.status': 'staged', 'strata.task-id': 'load' });
    // The job itself saw its commit as main (iceberg-go checked its own result).
    const seen = await fetch(`${api}/iceberg/v1/${stack.tenant}/namespaces/silver/tables/events`, {
      headers: { authorization: `Bearer ${a.token}` },
    }).then(async (r) => parseJson<{ metadata: TableMetadata }>(await r.text()));
    expect(String(seen.metadata['current-snapshot-id'])).toBe(String(out['snapshot-id']));
    await expect(engine(['scan', '-table', 'silver.events'], writerKey)).resolves.toMatchObject({ stdout: '' });

    const r = await audit('r1');
    expect(r.versions.map((v) => [v.version, v.status, v.rowCount])).toEqual([[1, 'committed', 2]]);
    meta = await table();
    expect(String(meta.refs.main['snapshot-id'])).toBe(String(out['snapshot-id']));
    expect(meta.snapshots.find((s) => s.summary['strata.version'] === '1')!.summary['strata.status']).toBe('published');
    expect(meta.properties['strata.dataset']).toBe('silver.default.events');
    expect(rows(await engine(['scan', '-table', 'silver.events'], writerKey)).map((x) => x.id)).toEqual([1, 2]);
    // The audit ended the credential: the job commits nothing more.
    await expect(
      engine(['append', '-table', 'silver.events', '-rows', '[{"id":9,"name":"z"}]'], a.token),
    ).rejects.toThrow(/expired or was revoked|401|Unauthorized|NotAuthorized/);
    expect(
      (await new AuditStore(stack.db).audit(stack.tenant, { namespace: ['silver'], name: 'events' }, a.branch))?.status,
    ).toBe('published');
    // A retried audit finds the version it recorded.
    expect((await audit('r1')).versions.map((v) => v.version)).toEqual([1]);
  });

  it('a failing check leaves main where it was: the snapshot stays staged, rejected, with its failing rows', async () => {
    const before = String((await table()).refs.main['snapshot-id']);
    const a = await access('r2');
    await engine(
      [
        'append',
        '-table',
        'silver.events',
        '-rows',
        JSON.stringify([
          { id: 3, name: null },
          { id: 4, name: 'd' },
        ]),
      ],
      a.token,
    );
    const err = await audit('r2').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetryableError);
    expect((err as NonRetryableError).type).toBe('QualityGateFailed');
    expect((err as Error).message).toContain(`kept staged on ${a.branch}`);
    const meta = await table();
    expect(String(meta.refs.main['snapshot-id'])).toBe(before);
    const rejected = meta.snapshots.find(
      (s) => String(s['snapshot-id']) === String(meta.refs[a.branch]['snapshot-id']),
    )!;
    expect(rejected.summary['strata.status']).toBe('rejected');
    const v = await stack.lake!.catalog.version(
      stack.tenant,
      { layer: 'silver', namespace: 'default', name: 'events' },
      2,
    );
    expect(v?.status).toBe('rejected');
    expect(v?.checks[0]).toMatchObject({ passed: false, failing: 1 });
    // A long column reads as a string in a sample (64-bit values keep their precision in JSON).
    expect(v?.checks[0].sample).toEqual([expect.objectContaining({ id: '3', name: null })]);
    // Readers still see version 1's rows only.
    expect(rows(await engine(['scan', '-table', 'silver.events'], writerKey)).map((x) => x.id)).toEqual([1, 2]);
  });

  it('main moved during the audit: the publish fails and says so; main stays where the other writer put it', async () => {
    const a = await access('r3');
    await engine(['append', '-table', 'silver.events', '-rows', '[{"id":5,"name":"e"}]'], a.token);
    // Another writer (an API key: no branch) moves main meanwhile.
    const other = parseJson<{ 'snapshot-id': number }>(
      (await engine(['append', '-table', 'silver.events', '-rows', '[{"id":6,"name":"f"}]'], writerKey)).stdout,
    );
    const err = await audit('r3').catch((e: unknown) => e);
    expect((err as NonRetryableError).type).toBe('PublishConflict');
    expect((err as Error).message).toMatch(
      new RegExp(`main moved during the audit of ${a.branch}: .* is at ${other['snapshot-id']} now`),
    );
    expect(String((await table()).refs.main['snapshot-id'])).toBe(String(other['snapshot-id']));
    const row = await new AuditStore(stack.db).audit(stack.tenant, { namespace: ['silver'], name: 'events' }, a.branch);
    expect(row?.status).toBe('conflict');
  });

  it("a run's credential writes only its declared outputs and reaches nothing but the catalog", async () => {
    const a = await access('r4');
    await expect(
      engine(['append', '-create', '-table', 'bronze.elsewhere', '-rows', '[{"id":1,"name":"a"}]'], a.token),
    ).rejects.toThrow(/writes only the outputs it declared \(silver\.events\)/);
    const runs = await fetch(`${api}/api/v1/runs`, { headers: { authorization: `Bearer ${a.token}` } });
    expect(runs.status).toBe(403);
    expect(((await runs.json()) as { error: string }).error).toContain("run's catalog credential");
  });
});

describe('a Spark task commits through the catalog', () => {
  it('the Spark Operator double commits as a real job would, its credential read from a Secret owned by the application and gone once it ends; checks publish it, or a failing check leaves main where it was', async () => {
    const kube = inject('kube');
    const tenant = stack.tenant;
    const sim = await SparkOperatorSim.start({
      kubeconfig: kube.kubeconfig,
      namespaces: [tenantNamespace(tenant)],
      nodeName: kube.nodeName,
    });
    const seen: Record<string, string>[] = [];
    /** The SparkApplication and its catalog Secret as they were while the job ran. */
    const apps: { app: Record<string, unknown>; secret: V1Secret }[] = [];
    try {
      const deps = {
        spark: SparkK8sClient.fromKubeconfig(kube.kubeconfig),
        lake: stack.lake,
        s3: stack.s3,
        icebergUri: `${api}/iceberg`,
      };
      let batch = '[]';
      let create = true;
      sim.scenario = () => ({
        // The job: Spark's Iceberg REST catalog settings, as Strata set them, used by an Iceberg client.
        job: async (a, driver) => {
          const conf = driver.conf;
          seen.push(conf);
          apps.push({
            app: a,
            secret: await sim.core.readNamespacedSecret({
              namespace: a.metadata.namespace,
              name: `${a.metadata.name}-catalog`,
            }),
          });
          const s3 = stack.s3!;
          await runIcebergReader(
            [
              'append',
              '-table',
              'gold.spark_events',
              '-rows',
              batch,
              ...(create ? ['-create'] : []),
              '-uri',
              conf['spark.sql.catalog.strata.uri'],
              '-warehouse',
              conf['spark.sql.catalog.strata.warehouse'],
            ],
            {
              STRATA_KEY: conf['spark.sql.catalog.strata.token'],
              S3_ACCESS_KEY_ID: s3.accessKeyId!,
              S3_SECRET_ACCESS_KEY: s3.secretAccessKey!,
              S3_REGION: s3.region,
            },
          );
        },
      });
      const sparkSpec = spec({
        id: 'wap_spark',
        tasks: [
          {
            id: 'gold',
            kind: 'pyspark',
            file: 'jobs/gold.py',
            outputs: [{ dataset: 'gold.spark_events', checks: [{ not_null: 'name' }] }],
            poll: { initial: '40ms', max: '200ms', backoff: 1.5 },
          },
        ],
      });
      const run = async (): Promise<RunState> => {
        const h = await stack.runs.start({ spec: sparkSpec, tenant, trigger: 'manual' });
        return stack.runs.wait(h.runId);
      };
      batch = JSON.stringify([{ id: 1, name: 'first' }]);
      const ok = await withExtWorker(stack, deps, run);
      expect(ok.status, JSON.stringify(ok.tasks.gold)).toBe('success');
      expect(seen[0]).toMatchObject({
        'spark.sql.catalog.strata': 'org.apache.iceberg.spark.SparkCatalog',
        'spark.sql.catalog.strata.type': 'rest',
        'spark.sql.catalog.strata.warehouse': tenant,
        'spark.sql.defaultCatalog': 'strata',
      });
      const token = seen[0]['spark.sql.catalog.strata.token'];
      expect(token).toMatch(/^strata_run_/);
      // The credential is nowhere in the SparkApplication (anyone who reads it sees only the Secret's name) …
      const { app, secret } = apps[0];
      expect(JSON.stringify(app)).not.toContain(token);
      expect(Object.keys((app.spec as { sparkConf: object }).sparkConf)).not.toContain(
        'spark.sql.catalog.strata.token',
      );
      const appName = (app.metadata as { name: string; uid: string }).name;
      const ref = { secretKeyRef: { name: `${appName}-catalog`, key: 'token' } };
      const appSpec = app.spec as { driver: { env: unknown[] }; executor: { env: unknown[] } };
      expect(appSpec.driver.env).toEqual([
        { name: 'STRATA_CATALOG_TOKEN', valueFrom: ref },
        { name: 'SPARK_SUBMIT_OPTS', value: '-Dspark.sql.catalog.strata.token=$(STRATA_CATALOG_TOKEN)' },
      ]);
      expect(appSpec.executor.env).toEqual([{ name: 'STRATA_CATALOG_TOKEN', valueFrom: ref }]);
      // … it is in the Secret the application owns (deleted with it), …
      expect(Buffer.from(secret.data!.token, 'base64').toString()).toBe(token);
      expect(secret.metadata?.ownerReferences).toEqual([
        expect.objectContaining({
          apiVersion: 'sparkoperator.k8s.io/v1beta2',
          kind: 'SparkApplication',
          name: appName,
          uid: (app.metadata as { uid: string }).uid,
        }),
      ]);
      // … and that Secret is gone once the job has ended (the application itself stays, as before).
      const gone = await sim.core
        .readNamespacedSecret({ namespace: tenantNamespace(tenant), name: `${appName}-catalog` })
        .then(
          () => 200,
          (e: { code?: number }) => e.code,
        );
      expect(gone).toBe(404);
      expect(ok.tasks.gold.output).not.toHaveProperty('secret');
      expect(JSON.stringify(ok.tasks.gold)).not.toContain(token);
      const published = await table('spark_events', ['gold']);
      const main = String(published.refs.main['snapshot-id']);
      expect(published.snapshots.find((s) => String(s['snapshot-id']) === main)!.summary['strata.status']).toBe(
        'published',
      );
      const v1 = await stack.lake!.catalog.current(tenant, {
        layer: 'gold',
        namespace: 'default',
        name: 'spark_events',
      });
      expect(v1).toMatchObject({ version: 1, rowCount: 1, taskId: 'gold' });

      batch = JSON.stringify([{ id: 2, name: null }]);
      create = false;
      const bad = await withExtWorker(stack, deps, run);
      expect(bad.status).toBe('failed');
      expect(bad.tasks.gold.error).toMatch(/QualityGateFailed|quality gate failed/);
      const after = await table('spark_events', ['gold']);
      expect(String(after.refs.main['snapshot-id'])).toBe(main);
      expect(rows(await engine(['scan', '-table', 'gold.spark_events'], writerKey))).toEqual([
        { id: 1, name: 'first' },
      ]);
    } finally {
      await sim.stop();
    }
  });
});

describe('an EMR task commits through the catalog', () => {
  it('the step reads its run credential from S3 (it is in no argument, so not in DescribeStep, the controller log or CloudTrail) and commits as a real job would; the object is gone once the step ends', async () => {
    const t = inject('s3');
    const scripts = `s3://${t.bucket}/${stack.taskQueue}-emr-scripts`;
    const emr = await EmrDouble.start();
    const raw = harnessS3Client();
    try {
      const clusterId = emr.addCluster('wap', '', { [TENANT_TAG]: stack.tenant });
      const steps: string[][] = [];
      let token = '';
      emr.beforeOp = async (op, input) => {
        if (op !== 'AddJobFlowSteps') return;
        // The step as EMR's command-runner would run it: bash reads the credential, then spark-submit.
        const args = (input.Steps as { HadoopJarStep: { Args: string[] } }[])[0].HadoopJarStep.Args;
        steps.push(args);
        expect(args.slice(0, 4)).toEqual(['bash', '-c', CATALOG_TOKEN_FROM_S3, 'strata-catalog']);
        const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(args[4])!;
        token = (
          await (await raw.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }))).Body!.transformToString()
        ).trim();
        const conf = Object.fromEntries(
          args.flatMap((a, i) => (args[i - 1] === '--conf' ? [a.split(/=(.*)/s).slice(0, 2)] : [])),
        ) as Record<string, string>;
        await runIcebergReader(
          [
            'append',
            '-table',
            'gold.emr_events',
            '-rows',
            JSON.stringify([{ id: 7, name: 'from emr' }]),
            '-create',
            '-uri',
            conf['spark.sql.catalog.strata.uri'],
            '-warehouse',
            conf['spark.sql.catalog.strata.warehouse'],
          ],
          {
            STRATA_KEY: token,
            S3_ACCESS_KEY_ID: t.accessKeyId,
            S3_SECRET_ACCESS_KEY: t.secretAccessKey,
            S3_REGION: t.region,
          },
        );
      };
      const deps = {
        emr: emrClientOf(emr),
        emrS3: harnessS3(),
        emrScriptsUri: scripts,
        lake: stack.lake,
        s3: stack.s3,
        icebergUri: `${api}/iceberg`,
      };
      const emrSpec = spec({
        id: 'wap_emr',
        tasks: [
          {
            id: 'gold',
            kind: 'pyspark',
            engine: 'emr',
            clusterId,
            file: 'jobs/gold.py',
            outputs: [{ dataset: 'gold.emr_events', checks: [{ not_null: 'name' }] }],
            poll: { initial: '40ms', max: '200ms', backoff: 1.5 },
          },
        ],
      });
      const st = await withExtWorker(stack, deps, async () => {
        const h = await stack.runs.start({ spec: emrSpec, tenant: stack.tenant, trigger: 'manual' });
        return stack.runs.wait(h.runId);
      });
      expect(st.status, JSON.stringify(st.tasks.gold)).toBe('success');
      expect(token).toMatch(/^strata_run_/);
      expect(steps).toHaveLength(1);
      const args = steps[0];
      expect(args.join(' ')).not.toContain(token);
      expect(args).not.toContain(`${SPARK_CATALOG_TOKEN_CONF}=${token}`);
      expect(args.slice(5, 8)).toEqual(['spark-submit', '--deploy-mode', 'cluster']);
      expect(args).toContain('spark.sql.catalog.strata.type=rest');
      // What EMR keeps of the step (DescribeStep) has no credential either.
      expect(JSON.stringify(emr.calls)).not.toContain(token);
      expect(JSON.stringify(st.tasks.gold)).not.toContain(token);
      // The credential's object is deleted once the poll has seen the step end.
      const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(args[4])!;
      expect(m[2]).toBe(`${stack.taskQueue}-emr-scripts/${catalogTokenKey(st.workflowId, 'gold')}`);
      expect(m[2]).toContain(`pipeline/${stack.tenant}/`);
      const left = await raw.send(new HeadObjectCommand({ Bucket: m[1], Key: m[2] })).then(
        () => 200,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
      expect(left).toBe(404);
      // The audit published what the step committed.
      const published = await table('emr_events', ['gold']);
      const main = String(published.refs.main['snapshot-id']);
      expect(published.snapshots.find((s) => String(s['snapshot-id']) === main)!.summary['strata.status']).toBe(
        'published',
      );
      expect(rows(await engine(['scan', '-table', 'gold.emr_events'], writerKey))).toEqual([
        { id: 7, name: 'from emr' },
      ]);

      // Without a scripts URI there is nowhere to keep the credential: the task says what to set,
      // adds no step and mints no credential.
      const { emrScriptsUri: _, ...noScripts } = deps;
      const refused = await withExtWorker(stack, noScripts, async () => {
        const h = await stack.runs.start({ spec: emrSpec, tenant: stack.tenant, trigger: 'manual' });
        return stack.runs.wait(h.runId);
      });
      expect(refused.tasks.gold.errorType).toBe('ConfigError');
      expect(refused.tasks.gold.error).toContain('STRATA_EMR_SCRIPTS_URI');
      expect(steps).toHaveLength(1);
      const minted = await stack.db.query('SELECT 1 FROM iceberg_run_credentials WHERE workflow_id = $1', [
        refused.workflowId,
      ]);
      expect(minted.rowCount).toBe(0);
    } finally {
      raw.destroy();
      await emr.close();
    }
  });
});

describe('partitioned tables', () => {
  it("Strata's writer writes one file per partition with the values in the manifests; iceberg-go prunes by them", async () => {
    const st = await stack.withWorker(async () =>
      stack.runs.wait(
        (
          await stack.runs.start({
            spec: spec(`
id: wap_partitioned
tasks:
  - id: orders
    kind: sql
    layer: silver
    output: silver.porders
    partitionBy: [customer, month(day), 'bucket(4, id)']
    sql: SELECT i::BIGINT AS id, 'c' || (i % 2) AS customer, DATE '2026-01-20' + (i * 7)::INT AS day FROM range(0, 12) t(i)
`),
            tenant: stack.tenant,
            trigger: 'manual',
          })
        ).runId,
      ),
    );
    expect(st.status, JSON.stringify(st.tasks.orders)).toBe('success');
    const meta = await table('porders');
    const spec0 = meta['partition-specs'].find((s) => s['spec-id'] === meta['default-spec-id'])!;
    expect(spec0.fields.map((f) => [f.name, f.transform, f['source-id']])).toEqual([
      ['customer', 'identity', 2],
      ['day_month', 'month', 3],
      ['id_bucket', 'bucket[4]', 1],
    ]);
    const store = stack.store!;
    const [list] = (
      await decodeContainer<ManifestFile>(await store.getBytes(keyOf(store, meta.snapshots[0]['manifest-list'])))
    ).records;
    expect(list.partition_spec_id).toBe(spec0['spec-id']);
    expect(list.partitions?.[0].lower_bound?.toString()).toBe('c0');
    const entries = (await decodeContainer<ManifestEntry>(await store.getBytes(keyOf(store, list.manifest_path))))
      .records;
    // Every row's partition as Iceberg computes it: month = months since 1970-01, bucket = murmur3 % 4.
    const want = new Map<string, number>();
    const { murmur3 } = await import('../../activities/iceberg/partition.js');
    for (let i = 0; i < 12; i++) {
      const d = new Date(Date.UTC(2026, 0, 20 + i * 7));
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(i));
      const k = JSON.stringify([
        `c${i % 2}`,
        (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth(),
        (murmur3(b) & 0x7fffffff) % 4,
      ]);
      want.set(k, (want.get(k) ?? 0) + 1);
    }
    const got = new Map(
      entries.map((e) => [
        JSON.stringify([
          e.data_file.partition.customer,
          e.data_file.partition.day_month,
          e.data_file.partition.id_bucket,
        ]),
        e.data_file.record_count,
      ]),
    );
    expect(got).toEqual(want);
    // iceberg-go reads it, and a filter on the partition column scans only that partition's files.
    const all = rows(await engine(['scan', '-table', 'silver.porders'], writerKey));
    expect(all.map((x) => x.id).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    const c1 = await engine(['scan', '-table', 'silver.porders', '-filter', 'customer=c1'], writerKey);
    expect(rows(c1).every((x) => (x as unknown as { customer: string }).customer === 'c1')).toBe(true);
    expect(rows(c1)).toHaveLength(6);
    const c1Files = [...want.keys()].filter((k) => JSON.parse(k)[0] === 'c1').length;
    expect(c1.stderr).toContain(`files scanned: ${c1Files}`);
    expect(c1Files).toBeLessThan(entries.length);
  });

  it("truncate[W] on string, long and decimal columns: the spec's values in the manifests (a decimal as fixed bytes); iceberg-go reads the rows DuckDB reads and prunes by them", async () => {
    const st = await stack.withWorker(async () =>
      stack.runs.wait(
        (
          await stack.runs.start({
            spec: spec(`
id: wap_truncated
tasks:
  - id: orders
    kind: sql
    layer: silver
    output: silver.torders
    partitionBy: ['truncate(2, name)', 'truncate(10, id)', 'truncate(50, amount)']
    sql: SELECT i::BIGINT AS id, (['alpha', 'alps', 'beta', 'bet', 'gamma'])[((i + 5) % 5) + 1] || '-' || repeat('x', 70) AS name, CAST(((i * 37) % 200 - 100) * 0.25 AS DECIMAL(10,2)) AS amount FROM range(-5, 25) t(i)
`),
            tenant: stack.tenant,
            trigger: 'manual',
          })
        ).runId,
      ),
    );
    expect(st.status, JSON.stringify(st.tasks.orders)).toBe('success');
    const meta = await table('torders');
    const spec0 = meta['partition-specs'].find((s) => s['spec-id'] === meta['default-spec-id'])!;
    expect(spec0.fields.map((f) => [f.name, f.transform, f['source-id']])).toEqual([
      ['name_trunc', 'truncate[2]', 2],
      ['id_trunc', 'truncate[10]', 1],
      ['amount_trunc', 'truncate[50]', 3],
    ]);
    // Every row's partition as the spec computes it (JavaScript's % keeps the dividend's sign, as Java's does).
    const trunc = (v: bigint, w: bigint) => v - (((v % w) + w) % w);
    const names = ['alpha', 'alps', 'beta', 'bet', 'gamma'];
    const want = new Map<string, number>();
    for (let i = -5; i < 25; i++) {
      const unscaled = BigInt(((i * 37) % 200) - 100) * 25n;
      const k = JSON.stringify([
        names[(i + 5) % 5].slice(0, 2), // the first 2 code points of `${name}-xxx…`
        Number(trunc(BigInt(i), 10n)),
        fixedDecimal(trunc(unscaled, 50n), 5).toString('hex'),
      ]);
      want.set(k, (want.get(k) ?? 0) + 1);
    }
    const store = stack.store!;
    const [list] = (
      await decodeContainer<ManifestFile>(await store.getBytes(keyOf(store, meta.snapshots[0]['manifest-list'])))
    ).records;
    const entries = (await decodeContainer<ManifestEntry>(await store.getBytes(keyOf(store, list.manifest_path))))
      .records;
    const got = new Map(
      entries.map((e) => {
        const p = e.data_file.partition as { name_trunc: string; id_trunc: number; amount_trunc: Buffer };
        return [JSON.stringify([p.name_trunc, p.id_trunc, p.amount_trunc.toString('hex')]), e.data_file.record_count];
      }),
    );
    expect(got).toEqual(want);
    // The manifest list's bounds per field, in the single-value binary form (a decimal: minimum bytes of its unscaled value).
    const unscaledAll = [...Array(30).keys()].map((j) => trunc(BigInt((((j - 5) * 37) % 200) - 100) * 25n, 50n));
    const minU = unscaledAll.reduce((a, b) => (b < a ? b : a));
    const maxU = unscaledAll.reduce((a, b) => (b > a ? b : a));
    expect(list.partitions?.map((p) => [p.lower_bound?.toString('hex'), p.upper_bound?.toString('hex')])).toEqual([
      [Buffer.from('al').toString('hex'), Buffer.from('ga').toString('hex')],
      [Buffer.from([0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).toString('hex'), '1400000000000000'],
      [decimalBytes(minU).toString('hex'), decimalBytes(maxU).toString('hex')],
    ]);

    // iceberg-go reads every row DuckDB reads from the version's files.
    const duck = (await datasetRows(stack, { layer: 'silver', name: 'torders' })).map((r) => [
      Number(r.id),
      r.name,
      Number(r.amount),
    ]);
    const norm = (xs: unknown[][]) => xs.sort((a, b) => Number(a[0]) - Number(b[0]));
    const go = jsonLines((await engine(['scan', '-table', 'silver.torders'], writerKey)).stdout).map((r) => [
      Number(r.id),
      r.name,
      Number(r.amount),
    ]);
    expect(norm(go)).toEqual(norm(duck));
    expect(go).toHaveLength(30);
    // A filter on a truncated column scans only the files of its truncated value. The names are longer than the
    // 64 bytes Strata keeps as column bounds, so no column statistics can prune here: only the partition values do.
    const files = (pick: (k: [string, number, string]) => boolean) =>
      entries.filter((e) => {
        const p = e.data_file.partition as { name_trunc: string; id_trunc: number; amount_trunc: Buffer };
        return pick([p.name_trunc, p.id_trunc, p.amount_trunc.toString('hex')]);
      }).length;
    const alpsName = `alps-${'x'.repeat(70)}`;
    const alps = await engine(['scan', '-table', 'silver.torders', '-filter', `name=${alpsName}`], writerKey);
    expect(jsonLines(alps.stdout).map((r) => r.name)).toEqual(Array(6).fill(alpsName));
    const alFiles = files((k) => k[0] === 'al');
    expect(alps.stderr).toContain(`files scanned: ${alFiles}`);
    expect(alFiles).toBeLessThan(entries.length);
    const seven = await engine(['scan', '-table', 'silver.torders', '-filter', 'id=7'], writerKey);
    expect(jsonLines(seven.stdout).map((r) => Number(r.id))).toEqual([7]);
    // (The id column has bounds too, which may prune further inside partition 0.)
    const zeroFiles = files((k) => k[1] === 0);
    const scanned = Number(/files scanned: (\d+)/.exec(seven.stderr)?.[1]);
    expect(scanned).toBeGreaterThan(0);
    expect(scanned).toBeLessThanOrEqual(zeroFiles);
    expect(zeroFiles).toBeLessThan(entries.length);
  });
});
