/**
 * /api/v1/clusters over real HTTP: a worker on the run's real Kubernetes API server runs the entity
 * workflows; tenants come from API keys and never see each other's clusters.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildApi } from '../../api/app.js';
import { loadConfig } from '../../schemas/config.js';
import { extTestStack, startDoubles, withExtWorker, type Doubles } from '../fakes/ext-stack.js';
import { waitFor } from '../harness/specs.js';
import type { TestStack } from '../harness/temporal.js';

const BOOT = 'bootstrap-admin-key-for-clusters-0123';
let stack: TestStack;
let d: Doubles;
let app: FastifyInstance;
let base: string;
const keys: Record<string, string> = {};
// Tenants of this file only: the cluster-count quota reads the shared dev server's visibility.
let team: string;
let free: string;

async function call(method: string, url: string, key: string, body?: unknown) {
  const res = await fetch(base + url, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

beforeAll(async () => {
  stack = await extTestStack('clusterapi');
  team = `team-${stack.tenant}`;
  free = `free-${stack.tenant}`;
  d = await startDoubles({ tenant: team, sparkTenants: [team, free] });
  d.deps.tenantTiers = { [team]: 'team' };
  const config = loadConfig({
    STRATA_TASK_QUEUE: stack.taskQueue,
    STRATA_BOOTSTRAP_ADMIN_KEY: BOOT,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    STRATA_TENANT_TIERS: `${team}=team`,
  });
  ({ app } = await buildApi({ db: stack.db, client: stack.client, config }));
  base = await app.listen({ host: '127.0.0.1', port: 0 });
  for (const [name, tenant, role] of [
    ['ops', team, 'operator'],
    ['viewer', team, 'viewer'],
    ['other', free, 'operator'],
  ] as const) {
    const r = await call('POST', '/api/v1/keys', BOOT, { tenant, role, name });
    expect(r.status).toBe(201);
    keys[name] = r.json.key;
  }
});
afterAll(async () => {
  await app?.close();
  await d?.close();
  await stack?.close();
});

describe('/api/v1/clusters', () => {
  it('creates, lists, touches, resizes and deletes a cluster, refusing bad input, other tenants and the tier limits', async () => {
    await withExtWorker(stack, d.deps, async () => {
      const name = 'adhoc';
      // Bad input: every problem at once, nothing started.
      const bad = await call('POST', '/api/v1/clusters', keys.ops, { name: 'Bad_Name', instances: 0, bogus: 1 });
      expect(bad.status).toBe(400);
      expect(bad.json.error).toMatch(/body\.name: a cluster name is lower-case/);
      expect(bad.json.error).toMatch(/body\.instances: a cluster needs at least 1 instance/);
      expect(bad.json.error).toMatch(/unknown field\(s\) "bogus"/);
      expect((await call('POST', '/api/v1/clusters', keys.ops, { name, tenant: 'globex' })).json.error).toContain(
        `your key belongs to tenant ${team}`,
      );
      expect((await call('POST', '/api/v1/clusters', keys.ops, { name, instances: 40 })).status).toBe(403);
      expect((await call('POST', '/api/v1/clusters', keys.viewer, { name })).status).toBe(403);
      expect((await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).status).toBe(404);

      const made = await call('POST', '/api/v1/clusters', keys.ops, {
        name,
        instances: 2,
        idleTimeout: '10m',
        pollInterval: '100ms',
      });
      expect(made.status).toBe(202);
      expect(made.json).toMatchObject({ name, workflowId: `cluster/${team}/${name}` });
      expect((await call('POST', '/api/v1/clusters', keys.ops, { name })).status).toBe(409);
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).json.phase === 'ready',
        60_000,
      );

      // Another tenant sees nothing and can change nothing.
      expect((await call('GET', `/api/v1/clusters/${name}`, keys.other)).status).toBe(404);
      expect((await call('DELETE', `/api/v1/clusters/${name}`, keys.other)).status).toBe(404);
      expect((await call('POST', `/api/v1/clusters/${name}/resize`, keys.other, { instances: 1 })).status).toBe(404);
      expect((await call('GET', '/api/v1/clusters', keys.other)).json.clusters).toEqual([]);

      await waitFor(async () =>
        (await call('GET', '/api/v1/clusters', keys.viewer)).json.clusters.some(
          (c: { name: string }) => c.name === name,
        ),
      );
      const list = await call('GET', '/api/v1/clusters', keys.viewer);
      expect(list.json.tier).toMatchObject({ name: 'team', maxClusters: 3 });
      expect(list.json.clusters.find((c: { name: string }) => c.name === name)).toMatchObject({
        status: 'RUNNING',
        state: { phase: 'ready', size: { instances: 2 } },
      });

      const before = (await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).json.touches;
      expect((await call('POST', `/api/v1/clusters/${name}/activity`, keys.ops)).status).toBe(202);
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).json.touches === before + 1,
      );
      expect((await call('POST', `/api/v1/clusters/${name}/touch`, keys.ops)).status).toBe(202);
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).json.touches === before + 2,
      );
      expect((await call('POST', `/api/v1/clusters/${name}/activity`, keys.viewer)).status).toBe(403);

      expect((await call('POST', `/api/v1/clusters/${name}/resize`, keys.ops, {})).status).toBe(400);
      expect((await call('POST', `/api/v1/clusters/${name}/resize`, keys.ops, { instances: 0 })).status).toBe(400);
      const over = await call('POST', `/api/v1/clusters/${name}/resize`, keys.ops, { instances: 40 });
      expect(over.status).toBe(403);
      expect(over.json.error).toContain(`over the team tier of tenant ${team}`);
      const resized = await call('POST', `/api/v1/clusters/${name}/resize`, keys.ops, { instances: 3 });
      expect(resized.status).toBe(200);
      expect(resized.json.size).toEqual({ instances: 3, cores: 2, memoryGi: 4 });
      expect((await d.kube.find('sparkconnects', `strata-${team}`, name))?.spec.executor).toMatchObject({
        instances: 3,
      });

      expect((await call('DELETE', `/api/v1/clusters/${name}`, keys.viewer)).status).toBe(403);
      expect((await call('DELETE', `/api/v1/clusters/${name}`, keys.ops)).status).toBe(202);
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${name}`, keys.viewer)).json.phase === 'terminated',
        60_000,
      );
      const ended = await call('GET', `/api/v1/clusters/${name}`, keys.viewer);
      expect(ended.json.terminationReason).toMatch(/^deleted through the API by key /);
      expect(await d.kube.find('sparkconnects', `strata-${team}`, name)).toBeUndefined();
      await waitFor(async () => (await call('DELETE', `/api/v1/clusters/${name}`, keys.ops)).status === 404);
    });
  });

  it('holds a free-tier tenant to one cluster, even when creates race, and frees the slot when the cluster ends', async () => {
    await withExtWorker(stack, d.deps, async () => {
      // Six creates at once for the one slot: exactly one wins (a count over visibility would let several through).
      const names = ['one', 'two', 'three', 'four', 'five', 'six'];
      const tries = await Promise.all(
        names.map((name) =>
          call('POST', '/api/v1/clusters', keys.other, { name, idleTimeout: '10m', pollInterval: '100ms' }),
        ),
      );
      expect(tries.map((t) => t.status).sort()).toEqual([202, 403, 403, 403, 403, 403]);
      const winner = names[tries.findIndex((t) => t.status === 202)];
      for (const t of tries.filter((t) => t.status === 403))
        expect(t.json.error).toMatch(
          new RegExp(`already runs 1 cluster\\(s\\), the most its free tier allows \\(${winner}\\)`),
        );
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${winner}`, keys.other)).json.phase === 'ready',
        60_000,
      );
      expect((await call('POST', '/api/v1/clusters', keys.other, { name: 'later' })).status).toBe(403);

      // Once it has ended, its slot goes to the next create.
      expect((await call('DELETE', `/api/v1/clusters/${winner}`, keys.other)).status).toBe(202);
      await waitFor(
        async () => (await call('GET', `/api/v1/clusters/${winner}`, keys.other)).json.phase === 'terminated',
        60_000,
      );
      await waitFor(
        async () =>
          (await stack.client.workflow.getHandle(`cluster/${free}/${winner}`).describe()).status.name !== 'RUNNING',
      );
      const next = await call('POST', '/api/v1/clusters', keys.other, {
        name: 'later',
        idleTimeout: '10m',
        pollInterval: '100ms',
      });
      expect(next.status).toBe(202);
      expect((await call('DELETE', '/api/v1/clusters/later', keys.other)).status).toBe(202);
    });
  });
});
