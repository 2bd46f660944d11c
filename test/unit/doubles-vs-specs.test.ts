/**
 * The protocol doubles and the manifests Strata sends. The production clients drive the
 * doubles, so what is checked is what the clients really exchange. Two kinds of test:
 * - against what the project wrote (the doubles' own schemas and tables): always run;
 * - against the real published specs (CRDs, Airbyte OpenAPI, botocore EMR model), which are
 *   not in the repository (../shared/specs or STRATA_SPECS_DIR): run where they are present,
 *   skipped with "[SKIPPED: no third-party spec files …]" in the title where not. Among them,
 *   the checks that the project's schemas and tables are restrictions of the real specs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AirbyteClient } from '../../activities/airbyte/client.js';
import { EmrJobsClient } from '../../activities/emr/client.js';
import { SPARK_STATES } from '../../activities/spark-k8s/activities.js';
import {
  buildSparkApplication,
  buildSparkConnect,
  DEFAULT_SPARK,
  tenantNamespace,
} from '../../activities/spark-k8s/manifest.js';
import { SparkJobTask } from '../../schemas/external.js';
import { AirbyteDouble, DEFINITIONS, SYNC_SCENARIOS } from '../fakes/airbyte-double.js';
import { checkShape, emrModel } from '../fakes/emr-model.js';
import { EmrDouble, STEP_SCENARIOS } from '../fakes/emr-double.js';
import { EMR_API, restrictionProblems } from '../fakes/emr-shapes.js';
import { startKube, type KubeFixture } from '../fakes/ext-stack.js';
import { OPERATOR_TRANSITIONS } from '../fakes/spark-operator-sim.js';
import { sparkApplicationProblems } from '../fakes/spark-validate.js';
import { waitFor } from '../harness/specs.js';
import { schemaRestrictionProblems, SPARK_APPLICATION_SCHEMA, SPARK_CONNECT_SCHEMA } from '../fakes/spark-schemas.js';
import {
  AIRBYTE_OPENAPI,
  APP_CRD,
  CONNECT_CRD,
  crdSchema,
  crdValidator,
  HAVE_SPECS,
  NEEDS_SPECS,
  newAjv,
  specYaml,
  type Validate,
} from '../fakes/specs-dir.js';

const run = {
  runId: 'pipeline/acme/orders/manual-1',
  workflowId: 'pipeline/acme/orders/manual-1',
  pipelineId: 'orders',
  tenant: 'acme',
  trigger: 'manual',
  logicalDate: '2026-11-01T00:00:00Z',
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** This file's tenant on the run's Kubernetes API server. */
const TENANT = 'dvs-acme';

/** Checks against the third-party specs: run where they are present, skipped (and titled so) where not. */
const withSpecs = it.runIf(HAVE_SPECS);

describe('SparkApplication manifests, the project’s Spark schemas and the operator simulator vs the Spark Operator CRDs', () => {
  const ownApp = newAjv().compile(SPARK_APPLICATION_SCHEMA) as Validate;
  const ownConnect = newAjv().compile(SPARK_CONNECT_SCHEMA) as Validate;
  const variants: Record<string, unknown>[] = [
    { id: 'a', kind: 'pyspark', file: 's3://b/a.py' },
    {
      id: 'b',
      kind: 'pyspark',
      file: 's3://b/b.py',
      args: ['x'],
      image: 'my/spark:1',
      sparkVersion: '3.4.1',
      driver: { cores: 2, memory: '4g' },
      executor: { cores: 4, memory: '8Gi', instances: 6 },
      dynamicAllocation: { enabled: true, minExecutors: 1, maxExecutors: 8 },
      serviceAccount: 'etl',
      s3Secret: 'lake-creds',
      sparkConf: { 'spark.sql.adaptive.enabled': 'true' },
    },
    { id: 'c', kind: 'sql', engine: 'spark', sql: 'select 1' },
  ];
  const manifest = (task: Record<string, unknown>) =>
    buildSparkApplication({
      name: 'n',
      namespace: 'strata-acme',
      task: SparkJobTask.parse(task),
      run,
      defaults: DEFAULT_SPARK,
      remote: task.id === 'c' ? 'sc://x:15002' : undefined,
    });
  /** Objects the real API server refuses: a wrong type, a driver with 0 cores, no main file. */
  const refused = () => {
    const m = manifest(variants[0]);
    const { mainApplicationFile: _, ...noMain } = m.spec;
    return [
      { ...m, spec: { ...m.spec, type: 'Cobol' } },
      { ...m, spec: { ...m.spec, driver: { cores: 0 } } },
      { ...m, spec: noMain },
    ];
  };
  const connect = () =>
    buildSparkConnect({
      name: 'adhoc',
      namespace: 'strata-acme',
      run,
      image: DEFAULT_SPARK.image,
      sparkVersion: '4.0.0',
      executors: 2,
      cores: 2,
      memoryGi: 4,
    });

  it.each(variants)('a manifest for $kind $id validates against the project’s SparkApplication schema', (task) => {
    const m = manifest(task);
    expect(ownApp(m), JSON.stringify(ownApp.errors)).toBe(true);
    expect(JSON.stringify(m)).not.toMatch(/secret-value|AKIA/);
  });

  withSpecs.each(variants)(
    `a manifest for $kind $id validates against the real SparkApplication CRD${NEEDS_SPECS}`,
    (task) => {
      const v = crdValidator(APP_CRD, 'v1beta2');
      expect(v(manifest(task)), JSON.stringify(v.errors)).toBe(true);
    },
  );

  it('the project’s schema rejects what the operator’s API server would: a wrong type, a driver with 0 cores, no main file', () => {
    for (const o of refused()) expect(ownApp(o)).toBe(false);
    // What the check says names the field (once per schema that refuses it: the project's, and the CRD if present).
    const problems = sparkApplicationProblems(refused()[0]);
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p).toMatch(/^\/spec\/type: /);
  });

  withSpecs(`the real CRD rejects the same objects (so the check has teeth)${NEEDS_SPECS}`, () => {
    for (const o of refused()) expect(crdValidator(APP_CRD, 'v1beta2')(o)).toBe(false);
  });

  withSpecs(
    `the project’s SparkApplication and SparkConnect schemas are restrictions of the real CRDs${NEEDS_SPECS}`,
    () => {
      expect(schemaRestrictionProblems(SPARK_APPLICATION_SCHEMA, crdSchema(APP_CRD, 'v1beta2'))).toEqual([]);
      expect(schemaRestrictionProblems(SPARK_CONNECT_SCHEMA, crdSchema(CONNECT_CRD, 'v1alpha1'))).toEqual([]);
      // The comparison has teeth: a schema that forgets a required field, widens an enum or drops a minimum is caught.
      const spec = SPARK_APPLICATION_SCHEMA.properties as Record<string, any>;
      const looseSpec = {
        ...spec.spec,
        required: ['driver'],
        properties: {
          ...spec.spec.properties,
          mode: { type: 'string', enum: ['cluster', 'local'] },
          driver: { type: 'object', properties: { cores: { type: 'integer' } } },
        },
      };
      const loose = { ...SPARK_APPLICATION_SCHEMA, properties: { ...spec, spec: looseSpec } };
      expect(schemaRestrictionProblems(loose, crdSchema(APP_CRD, 'v1beta2'))).toEqual(
        expect.arrayContaining([
          'spec.mainApplicationFile: required by the CRD, not here',
          "spec.mode: local is not in the CRD's enum",
          'spec.driver.cores: minimum none where the CRD has 1',
        ]),
      );
    },
  );

  it('a SparkConnect manifest validates against the project’s SparkConnect schema', () => {
    expect(ownConnect(connect()), JSON.stringify(ownConnect.errors)).toBe(true);
  });

  withSpecs(`a SparkConnect manifest validates against the real SparkConnect CRD${NEEDS_SPECS}`, () => {
    const v = crdValidator(CONNECT_CRD, 'v1alpha1');
    expect(v(connect()), JSON.stringify(v.errors)).toBe(true);
  });

  // The project's CRDs (made from those schemas) on the test run's real API server, the operator simulated.
  const NS = tenantNamespace(TENANT);
  let kube: KubeFixture;
  beforeAll(async () => {
    kube = await startKube([TENANT]);
    await kube.admin.ensureNamespace(NS, {}, { cpu: 64, memoryGi: 256, pods: 100 });
    // The service account variants[1] runs as (the API server refuses pods of one that does not exist).
    await kube.admin.core
      .createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'etl' } } })
      .catch(() => undefined);
  });
  afterAll(() => kube?.close());

  /** The object as read through the client each time its state changes, from creation to COMPLETED. */
  async function throughTheStates(name: string) {
    kube.sim.scenario = () => ({ phaseMs: 400, rerun: true, runMs: 400 });
    await kube.spark.createOrAdopt(
      'sparkapplications',
      'v1beta2',
      buildSparkApplication({
        name,
        namespace: NS,
        task: SparkJobTask.parse(variants[1]),
        run,
        defaults: DEFAULT_SPARK,
      }),
    );
    const seen: { status?: any }[] = [];
    const state = (o: { status?: any }) => o.status?.applicationState?.state ?? '';
    const end = Date.now() + 60_000;
    while (Date.now() < end) {
      const o = await kube.spark.get('sparkapplications', 'v1beta2', NS, name);
      if (
        !seen.length ||
        state(seen[seen.length - 1]) !== state(o) ||
        o.status?.submissionAttempts !== seen[seen.length - 1].status?.submissionAttempts
      )
        seen.push(o);
      if (state(o) === 'COMPLETED' || state(o) === 'FAILED') break;
      await sleep(50);
    }
    return seen;
  }

  it('the simulator drives an application through the operator’s states on the real API server, each status valid in the project’s schema', async () => {
    const seen = await throughTheStates('states');
    for (const o of seen) expect(ownApp(o), JSON.stringify(ownApp.errors)).toBe(true);
    expect(seen.map((o) => o.status?.applicationState?.state ?? '')).toEqual([
      '',
      'SUBMITTED',
      'PENDING_RERUN',
      'SUBMITTED',
      'RUNNING',
      'SUCCEEDING',
      'COMPLETED',
    ]);
    expect(seen[4].status).toMatchObject({
      driverInfo: { podName: 'states-driver' },
      executorState: { 'states-exec-1': 'RUNNING' },
    });
    // Every move is one the operator's state table allows, between states Strata knows.
    // (The simulator records a move once its status write has returned: the last one may come
    // just after the poll above saw COMPLETED.)
    const moves = () => kube.sim.transitions.filter((t) => t.app === `${NS}/states`);
    await waitFor(async () => moves().length >= 6, 10_000).catch(() => {});
    expect(moves().length).toBe(6);
    for (const t of moves()) {
      expect(OPERATOR_TRANSITIONS[t.from], `${t.from} -> ${t.to}`).toContain(t.to);
      expect(SPARK_STATES).toContain(t.to);
    }
    // The table itself speaks only of the operator's states, and ends only in COMPLETED and FAILED.
    for (const [from, tos] of Object.entries(OPERATOR_TRANSITIONS)) {
      expect(SPARK_STATES).toContain(from);
      for (const to of tos) expect(Object.keys(OPERATOR_TRANSITIONS)).toContain(to);
      if (!tos.length) expect(['COMPLETED', 'FAILED']).toContain(from);
    }
  });

  withSpecs(
    `every status the simulator writes through the state machine validates against the real CRD${NEEDS_SPECS}`,
    async () => {
      const v = crdValidator(APP_CRD, 'v1beta2');
      for (const o of await throughTheStates('states-crd')) expect(v(o), JSON.stringify(v.errors)).toBe(true);
    },
  );

  it('the API server enforces the project’s CRDs: 422 Invalid for a body that breaks the schema (each refused object), 409 AlreadyExists, 404 NotFound, as kind: Status', async () => {
    const m = buildSparkApplication({
      name: 'bad',
      namespace: NS,
      task: SparkJobTask.parse(variants[0]),
      run,
      defaults: DEFAULT_SPARK,
    });
    const invalid = await kube.spark
      .createOrAdopt('sparkapplications', 'v1beta2', { ...m, spec: { ...m.spec, executor: { instances: 'many' } } })
      .catch((e) => e);
    expect(invalid).toMatchObject({ code: 422, reason: 'Invalid' });
    expect(invalid.message).toContain('spec.executor.instances');
    for (const o of refused())
      expect(
        await kube.spark
          .createOrAdopt('sparkapplications', 'v1beta2', { ...o, metadata: { ...o.metadata, namespace: NS } })
          .catch((e) => e),
        JSON.stringify(o.spec).slice(0, 80),
      ).toMatchObject({ code: 422, reason: 'Invalid' });
    expect(await kube.find('sparkapplications', NS, 'bad')).toBeUndefined();
    const res = await fetch(
      `${kube.tap.url}/apis/sparkoperator.k8s.io/v1beta2/namespaces/${NS}/sparkapplications/nope`,
    );
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'NotFound',
      code: 404,
    });
    kube.sim.scenario = () => ({ hold: true });
    const ok = buildSparkApplication({
      name: 'twice',
      namespace: NS,
      task: SparkJobTask.parse(variants[0]),
      run,
      defaults: DEFAULT_SPARK,
    });
    await kube.spark.createOrAdopt('sparkapplications', 'v1beta2', ok);
    const again = await fetch(`${kube.tap.url}/apis/sparkoperator.k8s.io/v1beta2/namespaces/${NS}/sparkapplications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ok),
    });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ kind: 'Status', reason: 'AlreadyExists', code: 409 });
    await kube.admin.delete('sparkapplications', 'v1beta2', NS, 'twice');
  });
});

describe('the Airbyte double vs the Airbyte public API OpenAPI document', () => {
  const doc = () => specYaml(AIRBYTE_OPENAPI);
  let ab: AirbyteDouble;
  beforeAll(async () => {
    ab = await AirbyteDouble.start();
  });
  afterAll(() => ab?.close());

  withSpecs(`serves only paths and methods the real spec defines${NEEDS_SPECS}`, () => {
    for (const [method, p] of AirbyteDouble.ROUTES) expect(doc().paths[p]?.[method], `${method} ${p}`).toBeDefined();
    expect(doc().components.schemas.JobStatusEnum.enum).toEqual([
      'pending',
      'queued',
      'running',
      'incomplete',
      'failed',
      'succeeded',
      'cancelled',
    ]);
  });

  /** A sync, an external one, a running job adopted by a second start, a cancel twice. */
  async function driveJobs(conn: string) {
    ab.connections.add(conn);
    ab.scenario = () => SYNC_SCENARIOS.success(60);
    const c = new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: ab.clientSecret });
    const { job } = await c.startSync(conn);
    ab.startExternalSync(conn);
    await c.getJob(job.jobId);
    await sleep(250);
    ab.scenario = () => SYNC_SCENARIOS.runForever();
    const first = await c.startSync(conn);
    const adopted = await c.startSync(conn);
    return {
      job,
      first,
      adopted,
      cancelled: await c.cancelJob(first.job.jobId),
      again: await c.cancelJob(first.job.jobId),
    };
  }
  const toRoute = (p: string) => p.replace('/api/public/v1', '').replace(/\/jobs\/\d+$/, '/jobs/{jobId}');

  it('runs jobs: a second start adopts the running job, a cancel cancels once, every route of the jobs API answers 200', async () => {
    const { first, adopted, cancelled, again } = await driveJobs('01111111-2222-4333-8444-555555555555');
    expect(adopted).toMatchObject({ adopted: true, job: { jobId: first.job.jobId } });
    expect([cancelled, again]).toEqual(['cancelled', 'not-running']);
    const oks = ab.requests.filter((r) => r.status === 200);
    expect(new Set(oks.map((r) => `${r.method} ${toRoute(r.path)}`))).toEqual(
      new Set(['POST /applications/token', 'POST /jobs', 'GET /jobs/{jobId}', 'GET /jobs', 'DELETE /jobs/{jobId}']),
    );
  });

  withSpecs(
    `every 200 body the client receives validates against the real spec’s response schema of its route${NEEDS_SPECS}`,
    async () => {
      const since = ab.requests.length;
      const { job } = await driveJobs('11111111-2222-4333-8444-555555555555');
      const ajv = newAjv();
      const validatorFor = (method: string, route: string) => {
        const schema = doc().paths[route][method].responses['200'].content['application/json'].schema;
        return ajv.compile({ ...schema, components: doc().components });
      };
      const oks = ab.requests.slice(since).filter((r) => r.status === 200);
      expect(oks.length).toBeGreaterThan(5);
      for (const r of oks) {
        const v = validatorFor(r.method.toLowerCase(), toRoute(r.path));
        expect(v(r.body), `${r.method} ${r.path}: ${JSON.stringify(v.errors)}`).toBe(true);
      }
      // The response schemas have teeth: a status outside the enum fails.
      expect(
        validatorFor(
          'get',
          '/jobs/{jobId}',
        )({ ...(oks.find((r) => r.path.endsWith(`/jobs/${job.jobId}`))!.body as object), status: 'exploded' }),
      ).toBe(false);
    },
  );

  it('re-authenticates once when its token is revoked', async () => {
    const conn = '21111111-2222-4333-8444-555555555555';
    ab.connections.add(conn);
    ab.scenario = () => SYNC_SCENARIOS.success(60);
    const c = new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: ab.clientSecret });
    const { job } = await c.startSync(conn);
    const tokens = ab.count('POST', /\/applications\/token$/, 200);
    ab.revokeTokens();
    expect((await c.getJob(job.jobId)).jobId).toBe(job.jobId);
    expect(ab.count('POST', /\/applications\/token$/, 200)).toBe(tokens + 1);
    expect(ab.count('GET', new RegExp(`/jobs/${job.jobId}$`), 401)).toBe(1);
  });

  it('errors are RFC 7807 problem bodies and carry no credentials', async () => {
    const c = new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: 'wrong' });
    const err = await c.getJob(1).catch((e) => e);
    expect(err).toMatchObject({ status: 401 });
    expect(err.message).not.toContain('wrong');
    const res = await fetch(`${ab.baseUrl}/jobs/1`);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(Object.keys(await res.json())).toEqual(expect.arrayContaining(['status', 'type', 'title', 'detail']));
  });
});

describe('the Airbyte double’s sources, destinations and connections vs the OpenAPI document', () => {
  const doc = () => specYaml(AIRBYTE_OPENAPI);
  const UUID_SEG = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const toRoute = (p: string) => {
    const r = p.replace('/api/public/v1', '');
    const m = /^\/(source|destination|connection)s\//.exec(r);
    return m && UUID_SEG.test(r) ? `/${m[1]}s/{${m[1]}Id}` : r;
  };
  /** The schema a $ref names, resolved once (the request schemas are all $refs). */
  const deref = (schema: { $ref?: string }) =>
    schema.$ref ? doc().components.schemas[schema.$ref.split('/').pop()!] : schema;
  const ours = (r: { path: string }) => /\/(sources|destinations|connections)(\/|$)/.test(r.path);
  let ab: AirbyteDouble;
  let c: AirbyteClient;
  let ws: string;
  beforeAll(async () => {
    ab = await AirbyteDouble.start();
    ws = ab.addWorkspace();
    c = new AirbyteClient({ baseUrl: ab.baseUrl, clientId: ab.clientId, clientSecret: ab.clientSecret });
  });
  afterAll(() => ab?.close());

  /** Every route of the three resources, through the client: create, list in pages, get, patch, delete. */
  async function driveIngestion() {
    const since = { requests: ab.requests.length, received: ab.received.length };
    const ws = ab.addWorkspace();
    const src = await c.createSource({
      name: 'pg',
      workspaceId: ws,
      configuration: { sourceType: 'postgres', host: 'h', password: 'p4ss' },
    });
    const src2 = await c.createSource({
      name: 'fake',
      workspaceId: ws,
      definitionId: DEFINITIONS.sources.faker,
      configuration: {},
    });
    const dst = await c.createDestination({
      name: 'lake',
      workspaceId: ws,
      configuration: { destinationType: 's3', secret_access_key: 'k' },
    });
    const conn = await c.createConnection({
      sourceId: src.sourceId,
      destinationId: dst.destinationId,
      schedule: { scheduleType: 'cron', cronExpression: '0 0 * * * ?' },
      configurations: { streams: [{ name: 'orders', syncMode: 'incremental_append' }] },
    });
    const firstPage = await c.listSources({ workspaceIds: [ws], limit: 1 });
    const secondPage = await c.listSources({ workspaceIds: [ws], limit: 1, offset: 1 });
    await c.listDestinations({ workspaceIds: [ws] });
    await c.listConnections({ workspaceIds: [ws], includeDeleted: true });
    await c.getSource(src.sourceId);
    await c.getDestination(dst.destinationId);
    await c.getConnection(conn.connectionId);
    await c.patchSource(src.sourceId, { name: 'pg2', configuration: { host: 'h2' } });
    await c.patchDestination(dst.destinationId, { name: 'lake2' });
    await c.patchConnection(conn.connectionId, { name: 'renamed', status: 'inactive' });
    await c.deleteConnection(conn.connectionId);
    await c.deleteSource(src2.sourceId);
    await c.deleteDestination(dst.destinationId);
    const gone = await c.getConnection(conn.connectionId).catch((e) => e);
    return {
      ws,
      src,
      src2,
      conn,
      firstPage,
      secondPage,
      gone,
      requests: ab.requests.slice(since.requests).filter(ours),
      received: ab.received.slice(since.received).filter(ours),
    };
  }

  it('serves every route of sources, destinations and connections: masked secrets, pages with next/previous, 204 deletes, then 404', async () => {
    const { ws, src, src2, conn, firstPage, secondPage, gone, requests } = await driveIngestion();
    expect(conn).toMatchObject({
      name: 'pg → lake',
      workspaceId: ws,
      status: 'active',
      namespaceDefinition: 'destination',
    });
    expect(src.configuration.password).toBe('**********');
    expect(firstPage.next).toBeDefined();
    expect(secondPage).toMatchObject({ data: [{ sourceId: src2.sourceId }] });
    expect(secondPage.previous).toBeDefined();
    expect(secondPage.next).toBeUndefined();
    expect(gone).toMatchObject({ status: 404 });
    // Every route of the three resources was driven (and only routes the double declares).
    const seen = new Set(requests.map((r) => `${r.method.toLowerCase()} ${toRoute(r.path)}`));
    expect(seen).toEqual(
      new Set(
        AirbyteDouble.ROUTES.filter(([, p]) => /^\/(source|destination|connection)s/.test(p)).map(
          ([m, p]) => `${m} ${p}`,
        ),
      ),
    );
    for (const r of requests.filter((x) => x.status === 204)) expect(r.body, `${r.method} ${r.path}`).toBeUndefined();
  });

  withSpecs(
    `every body the client sends and every answer the double gives fit the real spec: 200 bodies, 204 without a body, declared query parameters${NEEDS_SPECS}`,
    async () => {
      const { src, conn, requests, received } = await driveIngestion();
      const ajv = newAjv();
      const compile = (schema: object) => ajv.compile({ ...schema, components: doc().components });
      expect(requests.length).toBeGreaterThan(10);
      for (const r of requests) {
        const op = doc().paths[toRoute(r.path)][r.method.toLowerCase()];
        if (r.status === 204) {
          expect(op.responses['204'], `${r.method} ${r.path}`).toBeDefined();
          expect(r.body).toBeUndefined();
          continue;
        }
        if (r.status !== 200) continue;
        const v = compile(op.responses['200'].content['application/json'].schema);
        expect(v(r.body), `${r.method} ${r.path}: ${JSON.stringify(v.errors)}`).toBe(true);
        const declared = new Set(
          (op.parameters ?? []).filter((p: { in: string }) => p.in === 'query').map((p: { name: string }) => p.name),
        );
        for (const k of r.query.keys()) expect(declared.has(k), `${r.method} ${r.path} ?${k}`).toBe(true);
      }
      for (const r of received) {
        const op = doc().paths[toRoute(r.path)][r.method.toLowerCase()];
        const schema = op.requestBody.content['application/json'].schema;
        const v = compile(schema);
        expect(v(r.body), `${r.method} ${r.path} request: ${JSON.stringify(v.errors)}`).toBe(true);
        // additionalProperties is open in the spec: check the client sends only declared fields.
        const props = Object.keys(deref(schema).properties);
        for (const k of Object.keys(r.body as object)) expect(props, `${r.method} ${r.path} sends ${k}`).toContain(k);
      }
      // The schemas have teeth: a response without definitionId, or with an unknown status, fails.
      const { definitionId: _, ...noDef } = src;
      expect(
        compile(doc().paths['/sources/{sourceId}'].get.responses['200'].content['application/json'].schema)(noDef),
      ).toBe(false);
      expect(
        compile(doc().paths['/connections/{connectionId}'].get.responses['200'].content['application/json'].schema)({
          ...conn,
          status: 'exploded',
        }),
      ).toBe(false);
    },
  );

  withSpecs(`each create requires what the real spec’s request schema requires${NEEDS_SPECS}`, () => {
    for (const [p, fields] of Object.entries(AirbyteDouble.REQUIRED)) {
      const required: string[] = deref(doc().paths[p].post.requestBody.content['application/json'].schema).required;
      expect([...required].sort(), p).toEqual([...fields].sort());
    }
  });

  it('answers 400 problems naming each required field left out, 404 problems for unknown ids and workspaces', async () => {
    const src = await c.createSource({ name: 's', workspaceId: ws, configuration: { sourceType: 'faker' } });
    const dst = await c.createDestination({
      name: 'd',
      workspaceId: ws,
      configuration: { destinationType: 'dev-null' },
    });
    const valid: Record<string, Record<string, unknown>> = {
      '/sources': { name: 'x', workspaceId: ws, configuration: { sourceType: 'postgres' } },
      '/destinations': { name: 'x', workspaceId: ws, configuration: { destinationType: 's3' } },
      '/connections': { sourceId: src.sourceId, destinationId: dst.destinationId },
    };
    const post = (p: string, body: unknown) =>
      fetch(`${ab.baseUrl}${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ab.issueToken()}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect(Object.keys(AirbyteDouble.REQUIRED).sort()).toEqual(Object.keys(valid).sort());
    for (const [p, body] of Object.entries(valid)) {
      const required = AirbyteDouble.REQUIRED[p];
      expect(required.length, p).toBeGreaterThan(0);
      expect((await post(p, body)).status, `${p} valid`).toBe(200);
      for (const field of required) {
        const { [field]: _, ...without } = body;
        const res = await post(p, without);
        expect(res.status, `${p} without ${field}`).toBe(400);
        expect(res.headers.get('content-type')).toBe('application/problem+json');
        const problem = await res.json();
        expect(Object.keys(problem)).toEqual(expect.arrayContaining(['status', 'type', 'title', 'detail']));
        expect(problem.detail, `${p} without ${field}`).toContain(field);
      }
    }
    // A delete answers 204 with no body at all; then the resource is gone.
    const del = await fetch(`${ab.baseUrl}/sources/${src.sourceId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ab.issueToken()}` },
    });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    expect(await c.getSource(src.sourceId).catch((e) => e)).toMatchObject({ status: 404 });
    expect(await c.getSource('00000000-0000-4000-8000-000000000000').catch((e) => e)).toMatchObject({
      status: 404,
      detail: 'Could not find a source with id: 00000000-0000-4000-8000-000000000000',
    });
    expect(
      await c
        .createSource({
          name: 'x',
          workspaceId: '00000000-0000-4000-8000-000000000001',
          configuration: { sourceType: 'faker' },
        })
        .catch((e) => e),
    ).toMatchObject({ status: 404 });
    expect(await c.listSources({ limit: 101 }).catch((e) => e)).toMatchObject({ status: 400 });
  });
});

describe('the EMR double vs the botocore EMR model', () => {
  let emr: EmrDouble;
  beforeAll(async () => {
    emr = await EmrDouble.start();
  });
  afterAll(() => emr?.close());

  it('the double’s table of the EMR API defines every operation it serves and every shape it names', () => {
    expect(new Set(Object.keys(EMR_API.operations))).toEqual(new Set(EmrDouble.OPERATIONS));
    expect(EMR_API.metadata).toMatchObject({ protocol: 'json', jsonVersion: '1.1', targetPrefix: 'ElasticMapReduce' });
    // Compared with itself, the table has no differences, so any problem reported is a shape it names but does not define.
    expect(restrictionProblems(EMR_API, EMR_API)).toEqual([]);
    const broken = {
      ...EMR_API,
      shapes: { ...EMR_API.shapes, Step: { type: 'structure' as const, members: { Extra: { shape: 'Undefined' } } } },
    };
    expect(restrictionProblems(broken, broken)).toEqual(['Step: names Undefined, which this table does not define']);
  });

  withSpecs(
    `the double’s table is a restriction of the real botocore model: same protocol, operations, members, required, enums${NEEDS_SPECS}`,
    () => {
      const m = emrModel();
      expect(m.metadata).toMatchObject({ protocol: 'json', jsonVersion: '1.1', targetPrefix: 'ElasticMapReduce' });
      for (const op of EmrDouble.OPERATIONS) expect(m.operations[op], op).toBeDefined();
      expect(restrictionProblems(EMR_API, m)).toEqual([]);
      // The comparison has teeth: an optional member the model requires, a made-up member or enum value is caught.
      const s = EMR_API.shapes;
      const loose = {
        ...EMR_API,
        shapes: {
          ...s,
          StepConfig: {
            type: 'structure' as const,
            members: { Name: { shape: 'XmlStringMaxLen256' }, HadoopJarStep: { shape: 'HadoopJarStepConfig' } },
            required: ['Name'],
          },
          DescribeStepInput: {
            type: 'structure' as const,
            members: { ClusterId: { shape: 'ClusterId' }, StepId: { shape: 'StepId' }, Force: { shape: 'Boolean' } },
            required: ['ClusterId', 'StepId'],
          },
          StepState: { type: 'string' as const, enum: ['PENDING', 'EXPLODED'] },
        },
      };
      expect(restrictionProblems(loose, m).sort()).toEqual([
        'DescribeStepInput.Force: not a member in the model',
        'StepConfig.HadoopJarStep: required in the model, not here',
        "StepState: EXPLODED is not in the model's enum",
      ]);
    },
  );

  /** Every operation the double serves, through the SDK client: a failing step, cancel, resize, terminate. */
  async function driveEmr() {
    const since = emr.calls.length;
    emr.stepScenario = () => STEP_SCENARIOS.failure('Unknown Error', 'boom');
    emr.clusterStartMs = 20;
    const c = new EmrJobsClient({
      region: 'us-east-1',
      endpoint: emr.url,
      credentials: { accessKeyId: 'AKIDSTRATATEST', secretAccessKey: 'x' },
    });
    const name = `strata/acme/x-${since}`;
    const id = await c.runCluster({
      name,
      release: 'emr-7.5.0',
      instanceType: 'm5.xlarge',
      coreInstances: 2,
      tags: { a: 'b' },
    });
    const found = await c.findActiveCluster(name);
    const { stepId } = await c.addStepOnce(id, {
      Name: 's1',
      ActionOnFailure: 'CONTINUE',
      HadoopJarStep: { Jar: 'command-runner.jar', Args: ['spark-sql', '-e', 'select 1'] },
    });
    await sleep(260);
    const step = await c.describeStep(id, stepId);
    await c.cancelStep(id, stepId);
    await c.resizeCore(id, 4);
    await c.describeCluster(id);
    await c.terminate(id);
    return { id, found, step, calls: emr.calls.slice(since).filter((x) => x.status === 200) };
  }

  it('every request the SDK sends and every answer the double gives fit the double’s table of the API', async () => {
    const { id, found, step, calls } = await driveEmr();
    expect(found).toBe(id);
    expect(step.Status?.State).toBe('FAILED');
    expect(step.Status?.FailureDetails).toMatchObject({ Reason: 'Unknown Error', Message: 'boom' });
    expect(step.Status?.Timeline?.CreationDateTime).toBeInstanceOf(Date);
    expect(new Set(calls.map((x) => x.op))).toEqual(new Set(EmrDouble.OPERATIONS));
    for (const call of calls) {
      const op = EMR_API.operations[call.op];
      expect(checkShape(op.input!.shape, call.input), `${call.op} input`).toEqual([]);
      if (op.output) expect(checkShape(op.output.shape, call.output), `${call.op} output`).toEqual([]);
    }
  });

  withSpecs(
    `every request the SDK sends and every answer the double gives fit the real botocore model${NEEDS_SPECS}`,
    async () => {
      const { calls } = await driveEmr();
      const m = emrModel();
      expect(new Set(calls.map((x) => x.op))).toEqual(new Set(EmrDouble.OPERATIONS));
      for (const call of calls) {
        const op = m.operations[call.op];
        expect(checkShape(op.input!.shape, call.input, '', m), `${call.op} input`).toEqual([]);
        if (op.output) expect(checkShape(op.output.shape, call.output, '', m), `${call.op} output`).toEqual([]);
      }
    },
  );

  it('rejects members the API does not have, and errors carry __type', async () => {
    const res = await fetch(emr.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'ElasticMapReduce.DescribeStep',
        authorization: 'AWS4-HMAC-SHA256 Credential=x',
      },
      body: JSON.stringify({ clusterId: 'j-1', StepId: 's-1' }),
    });
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.__type).toBe('ValidationException');
    expect(body.Message).toContain('clusterId: not a member of DescribeStepInput');
    expect(body.Message).toContain('ClusterId: required by DescribeStepInput');
    expect(checkShape('DescribeStepOutput', { Step: { Status: { State: 'EXPLODED' } } })).toEqual([
      'Step.Status.State: "EXPLODED" is not one of PENDING|CANCEL_PENDING|RUNNING|COMPLETED|CANCELLED|FAILED|INTERRUPTED',
    ]);
  });
});
