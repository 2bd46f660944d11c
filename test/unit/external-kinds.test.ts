import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../harness/tmp.js';
import { EXTERNAL_JOB, TASK_KINDS } from '../../schemas/kinds.js';
import { externalEngineOf, jobName } from '../../schemas/external.js';
import { validateSpec } from '../../schemas/pipeline.js';
import { checkJobQuota } from '../../activities/spark-k8s/activities.js';
import {
  CATALOG_TOKEN_FROM_S3,
  catalogTokenKey,
  logTail,
  PRESTO_FROM_S3,
  scriptKey,
  stepArgs,
} from '../../activities/emr/activities.js';
import { toS3Uri } from '../../activities/s3/client.js';
import { SparkJobTask, TIERS } from '../../schemas/external.js';
import { externalDepsFromEnv } from '../../workers/external-deps.js';
import { parseTenantTiers } from '../../schemas/external.js';
import { AirbyteClient, airbyteClientFromEnv } from '../../activities/airbyte/client.js';
import { loadConfig } from '../../schemas/config.js';
import { parseAirbyteWorkspaces } from '../../schemas/ingestion.js';

const problems = (tasks: Record<string, unknown>[]) => {
  const r = validateSpec({ id: 'p', tasks });
  return r.ok ? [] : r.problems.map((p) => `${p.path}: ${p.message}`);
};

describe('external task kinds in the registry', () => {
  it('routes sql by engine: duckdb/postgres/mysql to the activity, spark and emr to the externalJob child', () => {
    const route = TASK_KINDS.sql.route!;
    expect(route({ engine: 'duckdb' })).toEqual({ type: 'activity', activity: 'runSql', heartbeat: true });
    expect(route({ engine: 'spark' })).toEqual(EXTERNAL_JOB);
    expect(route({ engine: 'emr' })).toEqual(EXTERNAL_JOB);
    expect(TASK_KINDS.pyspark.run).toEqual({ type: 'child', workflow: 'externalJob' });
    expect(TASK_KINDS['airbyte.sync'].run).toEqual(EXTERNAL_JOB);
    expect(externalEngineOf({ kind: 'sql', engine: 'spark' })).toBe('spark-k8s');
    expect(externalEngineOf({ kind: 'pyspark', engine: 'emr' })).toBe('emr');
    expect(externalEngineOf({ kind: 'hive' })).toBe('emr');
    expect(externalEngineOf({ kind: 'airbyte.sync' })).toBe('airbyte');
  });

  it('accepts well-formed external tasks', () => {
    expect(
      problems([
        { id: 'a', kind: 'pyspark', file: 's3://b/a.py', executor: { instances: 2 }, poll: { initial: '1s' } },
        { id: 'b', kind: 'sql', engine: 'spark', sql: 'select 1' },
        { id: 'c', kind: 'sql', engine: 'emr', dialect: 'hive', clusterId: 'j-ABC123', sql: 'select 1' },
        { id: 'd', kind: 'hive', cluster: 'etl', query: 'select 1' },
        { id: 'e', kind: 'airbyte.sync', connectionId: '9b3c8f4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f' },
        {
          id: 'f',
          kind: 'airbyte.sync',
          connectionId: '9b3c8f4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f',
          outputs: ['bronze.orders', { dataset: 'bronze.customers', namespace: 'raw', checks: [{ not_null: 'id' }] }],
        },
      ]),
    ).toEqual([]);
  });

  it("says what to change for an Airbyte sync's bad outputs", () => {
    const sync = (outputs: unknown) => [
      { id: 'a', kind: 'airbyte.sync', connectionId: '9b3c8f4e-1d2a-4c5b-8e7f-0a1b2c3d4e5f', outputs },
    ];
    expect(problems(sync([{ dataset: 'silver.orders', namespace: 'raw' }]))).toEqual([
      'tasks[0].outputs.0: an Airbyte sync lands its streams in bronze: name the output bronze.orders',
    ]);
    expect(problems(sync(['bronze.orders', { dataset: 'bronze.orders' }]))).toEqual([
      'tasks[0].outputs.1: default.bronze.orders is declared twice: list each output once',
    ]);
    expect(problems(sync(['orders']))).toEqual([
      'tasks[0].outputs[0]: write an output table as layer.name, e.g. silver.orders',
    ]);
    expect(problems(sync([{ dataset: 'bronze.orders', checks: [{ not_null: 'id', severity: 'fatal' }] }]))).not.toEqual(
      [],
    );
  });

  it('says what to change for bad external tasks', () => {
    expect(problems([{ id: 'a', kind: 'sql', engine: 'emr', sql: 'x' }])).toEqual([
      'tasks[0].clusterId: engine emr needs "clusterId: j-…" or a managed "cluster: NAME"',
    ]);
    expect(problems([{ id: 'a', kind: 'sql', engine: 'spark', sql: 'x', dialect: 'presto' }])).toEqual([
      'tasks[0].dialect: engine spark runs Spark SQL only: remove "dialect" or use engine emr',
    ]);
    expect(problems([{ id: 'a', kind: 'sql', sql: 'x', executor: { instances: 2 } }])).toEqual([
      'tasks[0].executor: "executor" applies to engines spark and emr only: remove it or set engine',
    ]);
    expect(problems([{ id: 'a', kind: 'hive', clusterId: 'j-ABC', script: 's3://x', query: 'y' }])).toEqual([
      'tasks[0].script: give exactly one of "script" (an s3:// HiveQL file) or "query"',
    ]);
    expect(problems([{ id: 'a', kind: 'airbyte.sync', connectionId: 'conn-1' }])).toEqual([
      'tasks[0].connectionId: an Airbyte connection id is a UUID',
    ]);
    expect(problems([{ id: 'a', kind: 'pyspark', file: 's3://b/a.py', clusterId: 'j-ABC' }])).toEqual([
      'tasks[0].clusterId: "clusterId" is for engine emr; with spark, remove it',
    ]);
    expect(problems([{ id: 'a', kind: 'pyspark', file: 's3://b/a.py', driver: { memory: 'lots' } }])).toEqual([
      'tasks[0].driver.memory: write memory like "512m", "2g" or "4Gi"',
    ]);
  });
});

describe('job names', () => {
  it('are valid Kubernetes names, stable, and distinct where the sanitised text collides', () => {
    const a = jobName('pipeline/Acme/Orders_Daily/manual-20261101T000000Z-abc123', 'load_Bronze');
    expect(a).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    expect(a.length).toBeLessThanOrEqual(63);
    expect(jobName('pipeline/Acme/Orders_Daily/manual-20261101T000000Z-abc123', 'load_Bronze')).toBe(a);
    expect(jobName('pipeline/a/b/c', 'x_y')).not.toBe(jobName('pipeline/a/b/c', 'x-y'));
    const long = jobName(`pipeline/${'t'.repeat(80)}/${'p'.repeat(120)}/run`, 'task');
    expect(long.length).toBeLessThanOrEqual(63);
    expect(jobName('9/…', 't')).toMatch(/^[a-z]/);
  });
});

describe('resource caps and step arguments', () => {
  it('refuses a Spark job over the tier with the numbers to change', () => {
    expect(() =>
      checkJobQuota(
        SparkJobTask.parse({ kind: 'pyspark', id: 'x', executor: { instances: 2, cores: 2, memory: '4g' } }),
        'acme',
        TIERS.free,
      ),
    ).not.toThrow();
    expect(() =>
      checkJobQuota(
        SparkJobTask.parse({ kind: 'pyspark', id: 'x', executor: { instances: 4, cores: 2, memory: '8g' } }),
        'acme',
        TIERS.free,
      ),
    ).toThrow(/tier allows: 9 cores \(tier allows 8\), 33Gi memory \(tier allows 32Gi\); lower it/);
    expect(() =>
      checkJobQuota(
        SparkJobTask.parse({ kind: 'pyspark', id: 'x', dynamicAllocation: { maxExecutors: 9 } }),
        'acme',
        TIERS.free,
      ),
    ).toThrow(/9 executors \(tier allows 4\)/);
  });

  it('builds command-runner arguments per kind and dialect', () => {
    expect(stepArgs({ kind: 'sql', sql: 'q', dialect: 'hive' })).toEqual(['hive', '-e', 'q']);
    expect(stepArgs({ kind: 'sql', sql: 'q' })).toEqual(['spark-sql', '-e', 'q']);
    expect(stepArgs({ kind: 'hive', query: 'q' })).toEqual(['hive', '-e', 'q']);
  });

  it('runs uploaded scripts by file: spark-sql -f, hive -f, presto-cli --file after a copy to the node', () => {
    const u = 's3://b/scripts/run/t-0123456789abcdef.sql';
    expect(stepArgs({ kind: 'sql', sql: 'q', args: ['-v'] }, u)).toEqual(['spark-sql', '-f', u, '-v']);
    expect(stepArgs({ kind: 'sql', sql: 'q', dialect: 'hive' }, u)).toEqual(['hive', '-f', u]);
    expect(stepArgs({ kind: 'hive', query: 'q' }, u)).toEqual(['hive', '-f', u]);
    expect(stepArgs({ kind: 'sql', sql: 'q', dialect: 'presto', args: ['--catalog', 'hive'] }, u)).toEqual([
      'bash',
      '-c',
      PRESTO_FROM_S3,
      'strata-presto',
      u,
      '--catalog',
      'hive',
    ]);
    expect(PRESTO_FROM_S3).toContain('aws s3 cp --quiet "$1" "$f"; shift; presto-cli --file "$f" "$@"');
    expect(stepArgs({ kind: 'pyspark', file: '/home/me/a.py', args: ['x'] }, 's3://b/a.py')).toEqual([
      'spark-submit',
      '--deploy-mode',
      'cluster',
      's3://b/a.py',
      'x',
    ]);
  });

  it("keeps the run's catalog credential out of a step's arguments: the step reads it from S3 and hands it to Spark", async () => {
    const conf = { 'spark.sql.catalog.strata.uri': 'https://strata/iceberg', 'spark.sql.defaultCatalog': 'strata' };
    const tokenUri = 's3://b/scripts/catalog-credentials/j-1.token';
    const py = stepArgs({ kind: 'pyspark', file: 'a.py', args: ['x'] }, 's3://b/a.py', {
      conf,
      catalogToken: tokenUri,
    });
    const sql = stepArgs({ kind: 'sql', sql: 'q' }, 's3://b/q.sql', { conf, catalogToken: tokenUri });
    expect(py.slice(0, 5)).toEqual(['bash', '-c', CATALOG_TOKEN_FROM_S3, 'strata-catalog', tokenUri]);
    expect(py.slice(5)).toEqual([
      'spark-submit',
      '--deploy-mode',
      'cluster',
      '--conf',
      'spark.sql.catalog.strata.uri=https://strata/iceberg',
      '--conf',
      'spark.sql.defaultCatalog=strata',
      's3://b/a.py',
      'x',
    ]);
    expect(sql.slice(4)).toEqual([
      tokenUri,
      'spark-sql',
      ...Object.entries(conf).flatMap(([k, v]) => ['--conf', `${k}=${v}`]),
      '-f',
      's3://b/q.sql',
    ]);
    // In the run's folder, like its scripts: under the tenant's prefix, nothing that climbs out.
    expect(catalogTokenKey('pipeline/acme/orders/manual-1', 'load')).toBe(
      'pipeline/acme/orders/manual-1/load.catalog-token',
    );
    expect(catalogTokenKey('pipeline/acme/../globex/x', '../t')).toBe('pipeline/acme/__/globex/x/.._t.catalog-token');

    // The wrapper itself, run by bash with stand-ins for the AWS CLI and Spark on PATH.
    const bin = await tempDir('strata-emr-wrap-');
    const token = 'strata_run_AbC-d_e';
    const stub = async (name: string, body: string) => {
      await writeFile(path.join(bin, name), `#!/bin/sh\n${body}\n`);
      await chmod(path.join(bin, name), 0o755);
    };
    // aws s3 cp --quiet URI - : prints the object (only this URI exists)
    await stub(
      'aws',
      `[ "$1 $2 $3 $5" = "s3 cp --quiet -" ] || exit 9; [ "$4" = "${tokenUri}" ] || { echo "NoSuchKey" >&2; exit 1; }; printf '%s\\n' '${token}'`,
    );
    await stub('spark-submit', 'for a in "$@"; do printf "%s\\n" "$a"; done');
    const run = (args: string[]) =>
      promisify(execFile)(args[0], args.slice(1), { env: { PATH: `${bin}:/usr/bin:/bin` } });
    const out = await run(py);
    expect(out.stdout.trim().split('\n')).toEqual([
      '--conf',
      `spark.sql.catalog.strata.token=${token}`,
      ...py.slice(6),
    ]);
    // A credential that cannot be read stops the step before Spark starts, naming where it looked.
    const missing = await run(py.map((a) => (a === tokenUri ? 's3://b/other.token' : a))).catch(
      (e: { code: number; stderr: string; stdout: string }) => e,
    );
    expect(missing).toMatchObject({ code: 1, stdout: '' });
  });

  it('keys scripts by workflow id, task id and content hash, with nothing that climbs out', () => {
    const k = scriptKey('pipeline/acme/orders/manual-1', 'load', Buffer.from('select 1'), '.sql');
    expect(k).toBe(
      `pipeline/acme/orders/manual-1/load-${createHash('sha256').update('select 1').digest('hex').slice(0, 16)}.sql`,
    );
    expect(scriptKey('pipeline/acme/orders/manual-1', 'load', Buffer.from('select 2'), '.sql')).not.toBe(k);
    expect(scriptKey('../a b/./x?', 't', Buffer.from(''), '.sql')).toMatch(/^__\/a_b\/_\/x_\/t-[0-9a-f]{16}\.sql$/);
    expect(toS3Uri('s3n://logs/emr/')).toBe('s3://logs/emr');
    expect(toS3Uri('s3://logs')).toBe('s3://logs');
    expect(toS3Uri('hdfs:///x')).toBeUndefined();
  });

  it('keeps the last 60 lines and at most 8 KB of a log', () => {
    expect(logTail('a\nb\n\n')).toBe('a\nb');
    expect(logTail(Array.from({ length: 100 }, (_, i) => `l${i}`).join('\n')).split('\n')).toEqual(
      Array.from({ length: 60 }, (_, i) => `l${i + 40}`),
    );
    const long = logTail(Array.from({ length: 50 }, (_, i) => `${i}:${'x'.repeat(400)}`).join('\n'));
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(8 * 1024);
    expect(long.split('\n')[0]).toMatch(/^\d+:x{400}$/);
    expect(long.endsWith(`49:${'x'.repeat(400)}`)).toBe(true);
  });
});

describe('worker configuration from the environment', () => {
  it('parses tenant tiers and says what is wrong', () => {
    expect(parseTenantTiers('acme=team, big=enterprise')).toEqual({ acme: 'team', big: 'enterprise' });
    expect(() => parseTenantTiers('acme=gold')).toThrow(
      'STRATA_TENANT_TIERS: "acme=gold" should be TENANT=TIER with TIER one of free, team, enterprise',
    );
  });

  it('wires only the engines that are configured, and never echoes secrets', () => {
    const none = externalDepsFromEnv({ HOME: '/nonexistent' });
    expect(none.spark).toBeUndefined();
    expect(none.emr).toBeUndefined();
    expect(none.airbyte).toBeUndefined();
    const all = externalDepsFromEnv({
      HOME: '/nonexistent',
      AWS_REGION: 'eu-west-1',
      AIRBYTE_URL: 'http://airbyte/api/public/v1',
      AIRBYTE_CLIENT_ID: 'id',
      AIRBYTE_CLIENT_SECRET: 's3cr3t',
    });
    expect(all.emr).toBeDefined();
    expect(all.emrS3).toEqual({ region: 'eu-west-1' });
    expect(all.emrScriptsUri).toBeUndefined();
    expect(all.airbyte).toBeDefined();
    expect(
      externalDepsFromEnv({
        HOME: '/nonexistent',
        STRATA_EMR_REGION: 'eu-west-1',
        STRATA_EMR_SCRIPTS_URI: 's3://ops/strata/emr-scripts',
      }).emrScriptsUri,
    ).toBe('s3://ops/strata/emr-scripts');
    expect(() => externalDepsFromEnv({ HOME: '/nonexistent', STRATA_EMR_SCRIPTS_URI: '/tmp/scripts' })).toThrow(
      'STRATA_EMR_SCRIPTS_URI "/tmp/scripts" should be s3://BUCKET/PREFIX',
    );
    expect(
      externalDepsFromEnv({ HOME: '/nonexistent', STRATA_EMR_LOG_URI: 's3://ops/emr-logs/' }).clusterDefaults,
    ).toMatchObject({ emrLogUri: 's3://ops/emr-logs/' });
    expect(() => externalDepsFromEnv({ HOME: '/nonexistent', STRATA_EMR_LOG_URI: 'logs' })).toThrow(
      'STRATA_EMR_LOG_URI "logs" should be s3://BUCKET/PREFIX',
    );
    let msg = '';
    try {
      externalDepsFromEnv({ HOME: '/nonexistent', AIRBYTE_URL: 'http://airbyte', AIRBYTE_CLIENT_ID: 'visible-id' });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toBe(
      "AIRBYTE_URL is set but AIRBYTE_CLIENT_SECRET is not: set the Airbyte application's client credentials",
    );
  });
});

describe('STRATA_AIRBYTE_WORKSPACES (tenant → Airbyte workspace)', () => {
  const A = '744cc0ed-7f05-4949-9e60-2a814f90c035';
  const B = 'B0796797-DE23-4FC7-A5E2-7E131314718C';
  it('parses tenant=uuid pairs, lower-casing workspace ids', () => {
    expect(parseAirbyteWorkspaces(undefined)).toEqual({});
    expect(parseAirbyteWorkspaces('')).toEqual({});
    expect(parseAirbyteWorkspaces(` acme=${A} , globex = ${B},`)).toEqual({ acme: A, globex: B.toLowerCase() });
  });

  it('says what is wrong with a pair', () => {
    const shape = (pair: string) =>
      `STRATA_AIRBYTE_WORKSPACES: "${pair}" should be TENANT=WORKSPACE_UUID, e.g. acme=744cc0ed-7f05-4949-9e60-2a814f90c035 (tenant in lower-case letters, digits and "-")`;
    expect(() => parseAirbyteWorkspaces('acme')).toThrow(shape('acme'));
    expect(() => parseAirbyteWorkspaces('acme=not-a-uuid')).toThrow(shape('acme=not-a-uuid'));
    expect(() => parseAirbyteWorkspaces(`Acme=${A}`)).toThrow(shape(`Acme=${A}`));
    expect(() => parseAirbyteWorkspaces(`=${A}`)).toThrow(shape(`=${A}`));
    expect(() => parseAirbyteWorkspaces(`acme=${A}=x`)).toThrow(shape(`acme=${A}=x`));
    expect(() => parseAirbyteWorkspaces(`acme=${A},acme=${B}`)).toThrow(
      'STRATA_AIRBYTE_WORKSPACES: tenant acme is mapped twice; a tenant has one Airbyte workspace',
    );
    expect(() => parseAirbyteWorkspaces(`acme=${A},globex=${A.toUpperCase()}`)).toThrow(
      `STRATA_AIRBYTE_WORKSPACES: workspace ${A} is mapped to both acme and globex; give each tenant its own workspace`,
    );
  });

  it('is validated with the rest of the configuration', () => {
    expect(loadConfig({ STRATA_AIRBYTE_WORKSPACES: `acme=${A}` }).STRATA_AIRBYTE_WORKSPACES).toBe(`acme=${A}`);
    expect(() => loadConfig({ STRATA_AIRBYTE_WORKSPACES: 'acme=123' })).toThrow(
      'invalid configuration:\n  STRATA_AIRBYTE_WORKSPACES: "acme=123" should be TENANT=WORKSPACE_UUID, e.g. acme=744cc0ed-7f05-4949-9e60-2a814f90c035 (tenant in lower-case letters, digits and "-") (got "acme=123")',
    );
  });

  it('builds the API’s Airbyte client from the same variables as the worker’s', () => {
    expect(airbyteClientFromEnv({})).toBeUndefined();
    expect(
      airbyteClientFromEnv({
        AIRBYTE_URL: 'http://airbyte/api/public/v1',
        AIRBYTE_CLIENT_ID: 'id',
        AIRBYTE_CLIENT_SECRET: 's3cr3t',
      }),
    ).toBeInstanceOf(AirbyteClient);
    expect(() => airbyteClientFromEnv({ AIRBYTE_URL: 'http://airbyte' })).toThrow(
      "AIRBYTE_URL is set but AIRBYTE_CLIENT_ID and AIRBYTE_CLIENT_SECRET are not: set the Airbyte application's client credentials",
    );
  });
});

describe('the external-engines example', () => {
  it('is a valid spec', async () => {
    const { readFile } = await import('node:fs/promises');
    const { parseSpecText } = await import('../../schemas/spec-file.js');
    const text = await readFile(new URL('../../examples/lakehouse-external.yaml', import.meta.url), 'utf8');
    const r = parseSpecText(text);
    expect(r.ok ? [] : r.problems).toEqual([]);
  });
});
