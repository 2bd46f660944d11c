/**
 * Tenant isolation on the external engines (issue 9, part 4), through the protocol doubles:
 * a job's code comes only from its tenant's lake (or the locations the operator allowed),
 * EMR clusters and Airbyte connections must be the tenant's, and Spark pods get their image,
 * service account, settings, security and quota from the tier, never from the spec. Every
 * refusal is a non-retryable task failure that says what to change, and nothing reached the
 * engine: no SparkApplication, no EMR step, no uploaded script, no Airbyte job.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ClustersService } from '../../client/clusters.js';
import { RequestError } from '../../schemas/errors.js';
import type { ActivityDeps } from '../../activities/index.js';
import { tenantNamespace } from '../../activities/spark-k8s/manifest.js';
import { validateSpec, type PipelineSpec } from '../../schemas/pipeline.js';
import type { RunState } from '../../schemas/run.js';
import { SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { STEP_SCENARIOS } from '../fakes/emr-double.js';
import { extLake, extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { spec, waitFor } from '../harness/specs.js';
import { harnessS3, harnessS3Client, type TestStack } from '../harness/temporal.js';

const minio = inject('s3');
const s3cfg = harnessS3();
const raw = harnessS3Client();
const tag = randomBytes(3).toString('hex');
/** This file's tenants: their lake folders and Spark namespaces are this file's alone. */
const ACME = 'sx-acme';
const SOLO = 'sx-solo';
const LEGACY = 'sx-legacy';
/** A tenant of the Spark Connect test's own: cluster quota workflows are per tenant on the shared dev server. */
const CTENANT = `c${tag}`;
/** Outside every lake; the operator allowed it for the file's main tenant only. */
const SHARED = `s3://${minio.bucket}/shared-${tag}/`;
const SCRIPTS = `s3://${minio.bucket}/emr-scripts-${tag}`;
const FAST = { initial: '40ms', max: '150ms', backoff: 1.5 };
const POSTS = /\/sparkapplications$/;

let stack: TestStack;
let d: Doubles;
/** The shared lake root (s3://bucket/queue); the tenant's objects are under `{root}/{tenant}/`. */
let root: string;
let deps: Partial<ActivityDeps>;

beforeAll(async () => {
  [stack, d] = await Promise.all([
    extTestStack('sec-external'),
    startDoubles({ tenant: ACME, sparkTenants: [ACME, SOLO, LEGACY, CTENANT] }),
  ]);
  const lake = await extLake(stack, { tenantLocations: { [ACME]: [SHARED] } });
  root = lake.root;
  deps = {
    ...d.deps,
    lake: lake.lake,
    s3: lake.s3,
    tenantTiers: { [ACME]: 'team', [SOLO]: 'free', [LEGACY]: 'free' },
    emrS3: s3cfg,
    emrScriptsUri: SCRIPTS,
  };
});
afterAll(async () => {
  await d?.close();
  await stack?.close();
  raw.destroy();
});

async function run(s: PipelineSpec, tenant = ACME, extra: Partial<ActivityDeps> = {}): Promise<RunState> {
  return withExtWorker(stack, { ...deps, ...extra }, () => stack.runToEnd(s, { tenant }));
}

/** A spec that passed registration, then changed as a spec reaching the worker some other way could be. */
function injected(s: PipelineSpec, fields: Record<string, Record<string, unknown>>): PipelineSpec {
  for (const t of s.tasks as Record<string, unknown>[]) Object.assign(t, fields[String(t.id)] ?? {});
  return s;
}

const appsOf = async (pipeline: string) => (await d.kube.apps(pipeline)) as any[];
const problemsOf = (doc: object) => {
  const r = validateSpec(doc);
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

describe('Spark on Kubernetes: code only from the tenant’s lake', () => {
  it('refuses a file, pyFile or jar outside the tenant’s lake and allowed locations, and submits nothing', async () => {
    const posts = d.kube.tap.count('POST', POSTS);
    const s = injected(
      spec({
        id: 'sec-spark-files',
        tasks: [
          { id: 'other_tenant', kind: 'pyspark', file: `${root}/globex/jobs/x.py`, poll: FAST },
          { id: 'other_bucket', kind: 'pyspark', file: 's3://someone-else/jobs/x.py', poll: FAST },
          { id: 'jar', kind: 'pyspark', file: 'jobs/ok.py', jars: ['s3://someone-else/evil.jar'], poll: FAST },
          { id: 'pyfile', kind: 'pyspark', file: 'jobs/ok.py', pyFiles: [`${root}/globex/lib.zip`], poll: FAST },
          { id: 'image_file', kind: 'pyspark', file: 'jobs/x.py', poll: FAST },
          { id: 'climb', kind: 'pyspark', file: 'jobs/x.py', poll: FAST },
        ],
      }),
      // Registration refuses these (below); a spec reaching the worker otherwise is refused there too.
      { image_file: { file: 'local:///opt/spark/work-dir/x.py' }, climb: { file: '../globex/jobs/x.py' } },
    );
    const st = await run(s);
    for (const id of ['other_tenant', 'other_bucket', 'jar', 'pyfile', 'image_file', 'climb']) {
      expect(st.tasks[id].status, id).toBe('failed');
      expect(st.tasks[id].errorType, id).toBe('LocationError');
    }
    expect(st.tasks.other_tenant.error).toContain(
      `task other_tenant: file: "${root}/globex/jobs/x.py" is outside your lake`,
    );
    expect(st.tasks.other_tenant.error).toContain('STRATA_TENANT_LOCATIONS');
    expect(st.tasks.jar.error).toContain('task jar: jars[0]: "s3://someone-else/evil.jar" is outside your lake');
    expect(st.tasks.pyfile.error).toContain('pyFiles[0]');
    expect(st.tasks.image_file.error).toContain('has a scheme Strata does not read');
    expect(st.tasks.climb.error).toContain('climbs out of your lake');
    expect(d.kube.tap.count('POST', POSTS)).toBe(posts);
    expect(await appsOf('sec-spark-files')).toHaveLength(0);
  });

  it('passes lake paths and allowed locations to Spark as full URIs of the tenant’s objects', async () => {
    d.kube.sim.scenario = () => ({ runMs: 100 });
    const st = await run(
      spec({
        id: 'sec-spark-ok',
        tasks: [
          {
            id: 'job',
            kind: 'pyspark',
            file: 'jobs/main.py',
            pyFiles: [`${SHARED}lib.zip`],
            jars: [`${root}/${ACME}/jars/udf.jar`],
            files: ['conf/app.conf'],
            poll: FAST,
          },
        ],
      }),
    );
    expect(st.status).toBe('success');
    const [app] = await appsOf('sec-spark-ok');
    const acme = `${root.replace(/^s3:/, 's3a:')}/${ACME}`;
    expect(app.spec.mainApplicationFile).toBe(`${acme}/jobs/main.py`);
    expect(app.spec.deps).toEqual({
      pyFiles: [`${SHARED.replace(/^s3:/, 's3a:')}lib.zip`],
      jars: [`${acme}/jars/udf.jar`],
      files: [`${acme}/conf/app.conf`],
    });
  });

  it('refuses at registration what no tier allows: other schemes, "..", host mounts, JVM options, unbounded dynamic allocation', () => {
    const problems = problemsOf({
      id: 'static',
      tasks: [
        { id: 'a', kind: 'pyspark', file: 'local:///opt/x.py' },
        { id: 'b', kind: 'pyspark', file: '../globex/x.py', jars: ['https://repo.example/evil.jar'] },
        {
          id: 'c',
          kind: 'pyspark',
          file: 'jobs/c.py',
          sparkConf: {
            'spark.kubernetes.driver.volumes.hostPath.root.mount.path': '/host',
            'spark.kubernetes.executor.volumes.hostPath.root.options.path': '/',
            'spark.driver.extraJavaOptions': '-javaagent:/tmp/a.jar',
            'spark.kubernetes.authenticate.driver.serviceAccountName': 'spark-operator',
            'spark.jars.packages': 'evil:evil:1.0',
            'spark.hadoop.fs.s3a.aws.credentials.provider': 'com.amazonaws.auth.InstanceProfileCredentialsProvider',
            'spark.executor.instances': '500',
            'spark.sql.shuffle.partitions': '8',
          },
        },
        { id: 'd', kind: 'pyspark', file: 'jobs/d.py', dynamicAllocation: { enabled: true, minExecutors: 1 } },
        { id: 'e', kind: 'hive', clusterId: 'j-ABC', script: 'https://example.com/x.hql' },
        {
          id: 'f',
          kind: 'sql',
          engine: 'spark',
          sql: 'select 1',
          sparkConf: { 'spark.kubernetes.namespace': 'strata-globex' },
        },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^tasks\[0\]\.file: "local:\/\/\/opt\/x\.py" has a scheme Strata does not read/),
        expect.stringMatching(/^tasks\[1\]\.file: "\.\.\/globex\/x\.py" climbs out/),
        expect.stringMatching(/^tasks\[1\]\.jars\.0: "https:\/\/repo\.example\/evil\.jar" has a scheme/),
        expect.stringContaining(
          '"spark.kubernetes.driver.volumes.hostPath.root.mount.path" is not allowed: pod settings',
        ),
        expect.stringContaining('"spark.kubernetes.executor.volumes.hostPath.root.options.path" is not allowed'),
        expect.stringContaining(
          '"spark.driver.extraJavaOptions" is not allowed: JVM options and class paths can run code',
        ),
        expect.stringContaining('"spark.kubernetes.authenticate.driver.serviceAccountName" is not allowed'),
        expect.stringContaining('"spark.jars.packages" is not allowed: dependencies come from your lake'),
        expect.stringContaining('"spark.hadoop.fs.s3a.aws.credentials.provider" is not allowed: storage credentials'),
        expect.stringContaining(
          '"spark.executor.instances" is not allowed: set resources with the task\'s "driver", "executor" and "dynamicAllocation" fields',
        ),
        expect.stringMatching(/^tasks\[3\]\.dynamicAllocation: dynamicAllocation needs "maxExecutors"/),
        expect.stringMatching(/^tasks\[4\]\.script: "https:\/\/example\.com\/x\.hql" has a scheme/),
        expect.stringContaining('"spark.kubernetes.namespace" is not allowed'),
      ]),
    );
    expect(problems.some((p) => p.includes('spark.sql.shuffle.partitions'))).toBe(false);
    expect(
      problemsOf({
        id: 'ok',
        tasks: [
          {
            id: 'a',
            kind: 'pyspark',
            file: 'jobs/a.py',
            sparkConf: { 'spark.sql.adaptive.enabled': 'true' },
            dynamicAllocation: { enabled: true, maxExecutors: 4 },
          },
        ],
      }),
    ).toEqual([]);
  });
});

describe('Spark on Kubernetes: image, service account and settings from the tier', () => {
  it('refuses images, service accounts and settings the tenant’s tier does not allow, and submits nothing', async () => {
    const posts = d.kube.tap.count('POST', POSTS);
    const base = { kind: 'pyspark', file: 'jobs/x.py', poll: FAST };
    const s = injected(
      spec({
        id: 'sec-spark-policy',
        tasks: [
          { id: 'image', ...base, image: 'attacker/spark:latest' },
          { id: 'sa', ...base, serviceAccount: 'spark-operator' },
          { id: 'catalog', ...base, sparkConf: { 'spark.sql.catalog.evil': 'org.apache.iceberg.spark.SparkCatalog' } },
          { id: 'hostpath', ...base },
          { id: 'podtemplate', ...base },
          { id: 'unbounded', ...base },
        ],
      }),
      {
        hostpath: {
          sparkConf: { 'spark.kubernetes.executor.volumes.hostPath.docker.mount.path': '/var/run/docker.sock' },
        },
        podtemplate: {
          sparkConf: {
            'spark.kubernetes.driver.podTemplateFile': 's3://x/privileged.yaml',
            'spark.kubernetes.container.image': 'attacker/spark',
          },
        },
        unbounded: { dynamicAllocation: { enabled: true, minExecutors: 1 } },
      },
    );
    const st = await run(s);
    for (const id of ['image', 'sa', 'catalog', 'hostpath', 'podtemplate', 'unbounded']) {
      expect(st.tasks[id].status, id).toBe('failed');
      expect(st.tasks[id].errorType, id).toBe('PolicyViolation');
    }
    expect(st.tasks.image.error).toContain(
      'image "attacker/spark:latest" is not allowed on the team tier (allowed: apache/spark:3.5.3-python3)',
    );
    expect(st.tasks.image.error).toContain('STRATA_SPARK_IMAGES');
    expect(st.tasks.sa.error).toContain(
      'serviceAccount "spark-operator" is not allowed on the team tier (allowed: spark)',
    );
    expect(st.tasks.catalog.error).toContain(
      'sparkConf "spark.sql.catalog.evil" is not on the team tier\'s list of Spark settings',
    );
    expect(st.tasks.hostpath.error).toContain(
      '"spark.kubernetes.executor.volumes.hostPath.docker.mount.path" is not allowed',
    );
    expect(st.tasks.podtemplate.error).toContain('"spark.kubernetes.driver.podTemplateFile" is not allowed');
    expect(st.tasks.podtemplate.error).toContain('"spark.kubernetes.container.image" is not allowed');
    expect(st.tasks.unbounded.error).toContain('dynamicAllocation needs "maxExecutors" (at most 16 on your tier)');
    expect(d.kube.tap.count('POST', POSTS)).toBe(posts);
    expect(await appsOf('sec-spark-policy')).toHaveLength(0);
  });

  it('the operator’s per-tier allow-list opens an image or setting to one tier and not another', async () => {
    d.kube.sim.scenario = () => ({ runMs: 100 });
    const sparkPolicy = {
      images: { team: ['registry.example/spark:3.5*'] },
      conf: { team: ['spark.sql.catalog.lake*'] },
    };
    const task = {
      id: 'job',
      kind: 'pyspark',
      file: 'jobs/x.py',
      image: 'registry.example/spark:3.5.3-gpu',
      sparkConf: {
        'spark.sql.catalog.lake': 'org.apache.iceberg.spark.SparkCatalog',
        'spark.executor.memoryOverhead': '1g',
      },
      poll: FAST,
    };
    const team = await run(spec({ id: 'sec-spark-team', tasks: [task] }), ACME, { sparkPolicy });
    expect(team.status).toBe('success');
    expect((await appsOf('sec-spark-team'))[0].spec.image).toBe('registry.example/spark:3.5.3-gpu');
    const free = await run(
      spec({ id: 'sec-spark-free', tasks: [{ ...task, file: `${root}/${SOLO}/jobs/x.py` }] }),
      SOLO,
      { sparkPolicy },
    );
    expect(free.tasks.job.errorType).toBe('PolicyViolation');
    expect(free.tasks.job.error).toContain('image "registry.example/spark:3.5.3-gpu" is not allowed on the free tier');
    expect(free.tasks.job.error).toContain('"spark.sql.catalog.lake" is not on the free tier');
    expect(free.tasks.job.error).toContain('"spark.executor.memoryOverhead" is not on the free tier');
    expect(await appsOf('sec-spark-free')).toHaveLength(0);
  });

  it('counts the executors dynamic allocation can reach against the tier', async () => {
    const posts = d.kube.tap.count('POST', POSTS);
    const st = await run(
      spec({
        id: 'sec-spark-dyn',
        tasks: [
          {
            id: 'ceiling',
            kind: 'pyspark',
            file: 'jobs/x.py',
            executor: { instances: 1 },
            dynamicAllocation: { enabled: true, minExecutors: 1, maxExecutors: 40 },
            poll: FAST,
          },
          {
            id: 'initial',
            kind: 'pyspark',
            file: 'jobs/x.py',
            executor: { instances: 20 },
            dynamicAllocation: { enabled: true, maxExecutors: 2 },
            poll: FAST,
          },
        ],
      }),
    );
    expect(st.tasks.ceiling.errorType).toBe('QuotaExceeded');
    expect(st.tasks.ceiling.error).toContain('40 executors (tier allows 16)');
    expect(st.tasks.initial.errorType).toBe('QuotaExceeded');
    expect(st.tasks.initial.error).toContain('20 executors (tier allows 16)');
    expect(d.kube.tap.count('POST', POSTS)).toBe(posts);
  });

  it('runs driver and executors under the restricted pod security profile, in a namespace that enforces it', async () => {
    d.kube.sim.scenario = () => ({ runMs: 100 });
    // A namespace made before the Pod Security labels existed gets them on the next job.
    await d.deps.spark!.ensureNamespace(
      tenantNamespace(LEGACY),
      { 'app.kubernetes.io/managed-by': 'strata' },
      { cpu: 8, memoryGi: 32, pods: 24 },
    );
    const labelsOf = async (ns: string) => (await d.kube.admin.core.readNamespace({ name: ns })).metadata?.labels ?? {};
    expect((await labelsOf(tenantNamespace(LEGACY)))['pod-security.kubernetes.io/enforce']).toBeUndefined();
    const st = await run(
      spec({
        id: 'sec-spark-psa',
        tasks: [{ id: 'job', kind: 'pyspark', file: `${root}/${LEGACY}/jobs/x.py`, poll: FAST }],
      }),
      LEGACY,
    );
    expect(st.status).toBe('success');
    const [app] = await appsOf('sec-spark-psa');
    for (const role of ['driver', 'executor']) {
      expect(app.spec[role].securityContext, role).toEqual({
        runAsNonRoot: true,
        runAsUser: 185,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(app.spec[role].podSecurityContext, role).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
    }
    expect(app.spec.driver.serviceAccount).toBe('spark');
    // The API server admitted its driver and executors there, under the enforced profile, and kwok ran them.
    const pods = (
      await d.kube.admin.core.listNamespacedPod({
        namespace: tenantNamespace(LEGACY),
        labelSelector: `spark-app-name=${app.metadata.name}`,
      })
    ).items;
    expect(pods.find((p) => p.metadata?.labels?.['spark-role'] === 'driver')?.status?.phase).toBe('Succeeded');
    // Its executor was admitted and ran to the end (one the API server refused would have stayed PENDING).
    expect(app.status.executorState).toEqual({ [`${app.metadata.name}-exec-1`]: 'COMPLETED' });
    for (const ns of [tenantNamespace(LEGACY), tenantNamespace(ACME)])
      expect(await labelsOf(ns), ns).toMatchObject({
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/audit': 'restricted',
        'pod-security.kubernetes.io/warn': 'restricted',
      });
  });

  it('gives every tenant a namespace of its own, however long or alike the names', () => {
    const long = `a${'b'.repeat(60)}`;
    const alike = `a${'b'.repeat(59)}c`;
    const names = [long, alike, 'acme', 'a-b', 'a--b', `x${'y'.repeat(54)}`, `x${'y'.repeat(55)}`].map(tenantNamespace);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    expect(tenantNamespace('acme')).toBe('strata-acme');
    // A short tenant's name never takes the shape of a hashed one (63 characters).
    expect(tenantNamespace(tenantNamespace(long).slice('strata-'.length))).not.toBe(tenantNamespace(long));
    expect(() => tenantNamespace('Acme_Corp')).toThrow('not a valid tenant name');
  });
});

describe('EMR: the tenant’s clusters and the tenant’s code', () => {
  let mine: string;
  beforeAll(() => {
    mine = d.emr.addCluster('acme-warehouse', undefined, { 'strata:tenant': ACME });
  });
  const scripts = async () =>
    (await raw.send(new ListObjectsV2Command({ Bucket: minio.bucket, Prefix: `emr-scripts-${tag}/` }))).KeyCount ?? 0;
  const adds = () => d.emr.calls.filter((c) => c.op === 'AddJobFlowSteps').length;

  it('refuses a worker-local script or one outside the tenant’s lake: nothing uploaded, no step added', async () => {
    const outside = path.join(inject('scratchDir'), `secret-${tag}.py`);
    await writeFile(outside, 'print(open("/etc/passwd").read())\n');
    const [before, uploaded] = [adds(), await scripts()];
    const st = await run(
      spec({
        id: 'sec-emr-files',
        tasks: [
          { id: 'abs', kind: 'pyspark', engine: 'emr', clusterId: mine, file: outside, poll: FAST },
          { id: 'fileuri', kind: 'pyspark', engine: 'emr', clusterId: mine, file: 'file:///etc/passwd', poll: FAST },
          {
            id: 'globex',
            kind: 'pyspark',
            engine: 'emr',
            clusterId: mine,
            file: `${root}/globex/jobs/x.py`,
            poll: FAST,
          },
          { id: 'hive', kind: 'hive', clusterId: mine, script: 's3://someone-else/x.hql', poll: FAST },
          {
            id: 'deps',
            kind: 'pyspark',
            engine: 'emr',
            clusterId: mine,
            file: 'jobs/x.py',
            pyFiles: ['/etc/shadow'],
            poll: FAST,
          },
        ],
      }),
    );
    for (const id of ['abs', 'fileuri', 'globex', 'hive', 'deps']) {
      expect(st.tasks[id].status, id).toBe('failed');
      expect(st.tasks[id].errorType, id).toBe('LocationError');
    }
    expect(st.tasks.abs.error).toContain(`task abs: file: "${outside}" is outside your lake (${root}/${ACME})`);
    expect(st.tasks.fileuri.error).toContain('"file:///etc/passwd" is outside your lake');
    expect(st.tasks.hive.error).toContain('task hive: script: "s3://someone-else/x.hql" is outside your lake');
    expect(st.tasks.deps.error).toContain('pyFiles[0]: "/etc/shadow" is outside your lake');
    expect(adds()).toBe(before);
    expect(await scripts()).toBe(uploaded);
  });

  it('runs only on clusters tagged as the tenant’s: untagged and other tenants’ clusters are refused with what to do', async () => {
    d.emr.stepScenario = () => STEP_SCENARIOS.success(100);
    const untagged = d.emr.addCluster('shared-untagged');
    const theirs = d.emr.addCluster('globex-warehouse', undefined, { 'strata:tenant': 'globex' });
    const before = adds();
    const st = await run(
      spec({
        id: 'sec-emr-cluster',
        tasks: [
          { id: 'untagged', kind: 'sql', engine: 'emr', clusterId: untagged, sql: 'select 1', poll: FAST },
          { id: 'theirs', kind: 'pyspark', engine: 'emr', clusterId: theirs, file: 'jobs/x.py', poll: FAST },
          { id: 'mine', kind: 'sql', engine: 'emr', clusterId: mine, sql: 'select 1', poll: FAST },
        ],
      }),
    );
    expect(st.tasks.untagged.errorType).toBe('ClusterNotOwned');
    expect(st.tasks.untagged.error).toContain(`EMR cluster ${untagged} has no strata:tenant tag`);
    expect(st.tasks.untagged.error).toContain(`the platform operator must tag it strata:tenant=${ACME}`);
    expect(st.tasks.theirs.errorType).toBe('ClusterNotOwned');
    expect(st.tasks.theirs.error).toContain(`EMR cluster ${theirs} belongs to another tenant`);
    expect(st.tasks.theirs.error).not.toContain('globex');
    expect(st.tasks.mine.status).toBe('success');
    expect(d.emr.clusters.get(untagged)!.steps).toHaveLength(0);
    expect(d.emr.clusters.get(theirs)!.steps).toHaveLength(0);
    expect(adds() - before).toBe(1);
  });

  it('refuses Spark settings no tier allows on EMR too', async () => {
    const before = adds();
    const s = injected(
      spec({
        id: 'sec-emr-conf',
        tasks: [{ id: 'py', kind: 'pyspark', engine: 'emr', clusterId: mine, file: 'jobs/x.py', poll: FAST }],
      }),
      {
        py: { sparkConf: { 'spark.driver.extraJavaOptions': '-Dx=1', 'spark.executor.memory': '2g' } },
      },
    );
    const st = await run(s);
    expect(st.tasks.py.errorType).toBe('PolicyViolation');
    expect(st.tasks.py.error).toContain('"spark.driver.extraJavaOptions" is not allowed');
    expect(st.tasks.py.error).not.toContain('spark.executor.memory');
    expect(adds()).toBe(before);
  });
});

describe('Airbyte: the tenant’s workspace only', () => {
  it('refuses a connection of another workspace, and a tenant with no workspace, starting no sync', async () => {
    const foreign = d.airbyte.addSyncConnection(d.airbyte.addWorkspace());
    const own = d.airbyte.addSyncConnection(d.deps.airbyteWorkspaces![ACME]);
    d.airbyte.scenario = () => SYNC_SCENARIOS.success(100);
    const starts = d.airbyte.count('POST', /\/jobs$/);
    const st = await run(
      spec({
        id: 'sec-airbyte',
        tasks: [
          { id: 'foreign', kind: 'airbyte.sync', connectionId: foreign, poll: FAST },
          { id: 'own', kind: 'airbyte.sync', connectionId: own, poll: FAST },
        ],
      }),
    );
    expect(st.tasks.foreign.errorType).toBe('ConnectionNotOwned');
    expect(st.tasks.foreign.error).toContain(`Airbyte connection ${foreign} is not in tenant ${ACME}'s workspace`);
    expect(st.tasks.own.status).toBe('success');
    expect(d.airbyte.jobs.filter((j) => j.connectionId === foreign)).toHaveLength(0);
    expect(d.airbyte.count('POST', /\/jobs$/) - starts).toBe(1);

    const none = await run(
      spec({ id: 'sec-airbyte-none', tasks: [{ id: 'sync', kind: 'airbyte.sync', connectionId: own, poll: FAST }] }),
      SOLO,
    );
    expect(none.tasks.sync.errorType).toBe('ConfigError');
    expect(none.tasks.sync.error).toContain(`tenant ${SOLO} has no Airbyte workspace`);
    expect(none.tasks.sync.error).toContain('STRATA_AIRBYTE_WORKSPACES');
    expect(d.airbyte.count('POST', /\/jobs$/) - starts).toBe(1);
  });
});

describe('Managed clusters: image from the tier, restricted pods', () => {
  it('refuses a Spark Connect image the tier does not allow (403) and a malformed EMR release (400), starting nothing', async () => {
    const clusters = new ClustersService(stack.client, { taskQueue: stack.taskQueue, tenantTiers: { [ACME]: 'team' } });
    const name = `img-${tag}`;
    const refused = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        (e) => e as RequestError,
      );
    const image = await refused(
      clusters.create({ tenant: ACME, name, engine: 'spark-connect', release: 'attacker/spark:latest' }),
    );
    expect(image).toBeInstanceOf(RequestError);
    expect(image).toMatchObject({ status: 403 });
    expect(image!.message).toContain('image "attacker/spark:latest" is not allowed on the team tier');
    const release = await refused(
      clusters.create({ tenant: ACME, name, engine: 'emr', release: 'emr-latest; rm -rf' }),
    );
    expect(release).toMatchObject({ status: 400 });
    expect(release!.message).toContain('an EMR release label looks like "emr-7.5.0"');
    expect(await refused(clusters.create({ tenant: '../globex', name }))).toMatchObject({ status: 400 });
    expect(await refused(clusters.get(ACME, name))).toMatchObject({ status: 404 });
    expect(await d.kube.find('sparkconnects', tenantNamespace(ACME), name)).toBeUndefined();
    expect(d.kube.tap.records.filter((r) => r.path.includes(name))).toEqual([]);
  });

  it('a Spark Connect cluster’s server and executor pods get the restricted profile', async () => {
    const tenant = CTENANT;
    const clusters = new ClustersService(stack.client, {
      taskQueue: stack.taskQueue,
      tenantTiers: { [tenant]: 'team' },
    });
    const name = `psa-${tag}`;
    await withExtWorker(stack, deps, async () => {
      await clusters.create({
        tenant,
        name,
        engine: 'spark-connect',
        instances: 1,
        idleTimeout: '1m',
        pollInterval: '100ms',
      });
      await waitFor(async () => (await clusters.get(tenant, name)).phase === 'ready');
      const sc = (await d.kube.find('sparkconnects', tenantNamespace(tenant), name))! as any;
      for (const [part, container] of [
        ['server', 'spark-kubernetes-driver'],
        ['executor', 'spark-kubernetes-executor'],
      ])
        expect(sc.spec[part].template, part).toEqual({
          spec: {
            securityContext: expect.objectContaining({
              runAsNonRoot: true,
              seccompProfile: { type: 'RuntimeDefault' },
            }),
            containers: [
              {
                name: container,
                securityContext: expect.objectContaining({
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                }),
              },
            ],
          },
        });
      // The API server admitted the server and executor pods in the namespace that enforces `restricted`, and they run.
      const pods = async () =>
        (
          await d.kube.admin.core.listNamespacedPod({
            namespace: tenantNamespace(tenant),
            labelSelector: `spark-connect-name=${name}`,
          })
        ).items
          .map((p) => [p.metadata?.labels?.['spark-role'], p.status?.phase])
          .sort();
      await waitFor(async () => (await pods()).every(([, phase]) => phase === 'Running'), 60_000).catch(() => {});
      expect(await pods()).toEqual([
        ['executor', 'Running'],
        ['server', 'Running'],
      ]);
      await clusters.delete(tenant, name);
    });
  });
});
