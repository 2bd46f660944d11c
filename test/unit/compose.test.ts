/** docker-compose.yml cannot run here (no Docker engine); this keeps it honest instead. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../schemas/config.js';
import { ROOT } from '../harness/processes.js';

describe('docker-compose.yml', async () => {
  const compose = parse(await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<
      string,
      {
        environment?: Record<string, string>;
        ports?: string[];
        expose?: string[];
        volumes?: string[];
        command?: string[];
        build?: string;
        depends_on?: unknown;
      }
    >;
  };
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const s = compose.services;

  it('has every service the README names', () => {
    const named = [...readme.matchAll(/compose\s+service\s+`([a-z-]+)`/g)].map((m) => m[1]);
    expect(named.length).toBeGreaterThanOrEqual(6);
    for (const n of named) expect(Object.keys(s), n).toContain(n);
  });

  it('gives Strata services only variables the config schema knows, with values it accepts', () => {
    const known = new Set(Object.keys(ConfigSchema.shape));
    for (const name of ['strata-worker', 'strata-api']) {
      const env = s[name].environment ?? {};
      for (const k of Object.keys(env))
        expect(known.has(k) || k.startsWith('STRATA_CONN_'), `${name}: ${k}`).toBe(true);
      // ${VAR} references stand in for secrets: substitute placeholders of their shape and validate.
      const sample: Record<string, string> = {
        STRATA_PAYLOAD_KEYS: `_platform:p1=${Buffer.alloc(32, 7).toString('base64')}`,
      };
      const filled = Object.fromEntries(
        Object.entries(env).map(([k, v]) => [
          k,
          String(v).replace(/\$\{[^}]+\}/g, sample[k] ?? 'placeholder-secret-value-123'),
        ]),
      );
      const r = ConfigSchema.safeParse(filled);
      expect(r.success, `${name}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
      expect(s[name].build).toBe('.');
    }
  });

  it('gives the Temporal server the dynamic config Strata needs (updates, update-with-start)', async () => {
    const t = s.temporal as { environment: Record<string, string>; volumes?: string[] };
    const mount = t.volumes?.find((v) => v.endsWith(`/etc/temporal/${t.environment.DYNAMIC_CONFIG_FILE_PATH}:ro`));
    expect(mount, 'a volume mounts the file DYNAMIC_CONFIG_FILE_PATH names').toBeDefined();
    const dc = parse(await readFile(path.join(ROOT, mount!.split(':')[0]), 'utf8')) as Record<
      string,
      { value: unknown }[]
    >;
    expect(dc['frontend.enableUpdateWorkflowExecution']?.[0]?.value).toBe(true);
    expect(dc['frontend.enableExecuteMultiOperation']?.[0]?.value).toBe(true);
  });

  it('points Strata at the Temporal and Postgres services on the ports they expose', () => {
    const api = s['strata-api'].environment!;
    const worker = s['strata-worker'].environment!;
    for (const env of [api, worker]) {
      const [host, port] = env.TEMPORAL_ADDRESS.split(':');
      expect(s[host], host).toBeDefined();
      expect(s.temporal.expose).toContain(port);
      expect(new URL(env.DATABASE_URL.replace(/\$\{[^}]+\}/g, 'x')).host).toBe('postgres:5432');
    }
    expect(s['strata-api'].ports).toContain(`\${STRATA_BIND:-127.0.0.1}:${api.STRATA_API_PORT}:${api.STRATA_API_PORT}`);
    expect(api.STRATA_API_HOST).toBe('0.0.0.0');
    expect(s['temporal-ui'].environment!.TEMPORAL_ADDRESS).toBe(api.TEMPORAL_ADDRESS);
  });

  it('publishes only the API and the Web UI, on 127.0.0.1 unless STRATA_BIND says otherwise', () => {
    const published = Object.entries(s)
      .filter(([, svc]) => svc.ports?.length)
      .map(([n]) => n);
    expect(published.sort()).toEqual(['strata-api', 'temporal-ui']);
    for (const n of published)
      for (const p of s[n].ports!) expect(p, n).toMatch(/^\$\{STRATA_BIND:-127\.0\.0\.1\}:\d+:\d+$/);
  });

  it('points the Web UI at the API codec endpoint, with credentials, from the origin the API allows', () => {
    const ui = s['temporal-ui'].environment!;
    const api = s['strata-api'].environment!;
    const codec = new URL(ui.TEMPORAL_CODEC_ENDPOINT);
    expect(codec.pathname).toBe('/codec');
    expect(s['strata-api'].ports!.some((p) => p.endsWith(`:${codec.port}:${api.STRATA_API_PORT}`))).toBe(true);
    expect(ui.TEMPORAL_CODEC_INCLUDE_CREDENTIALS).toBe('true');
    // The API's CORS origin is TEMPORAL_UI_URL: it must be where the UI is published.
    const uiUrl = new URL(api.TEMPORAL_UI_URL);
    expect(s['temporal-ui'].ports!.some((p) => p.split(':').at(-2) === uiUrl.port)).toBe(true);
    expect(uiUrl.hostname).toBe(codec.hostname); // same site: the codec session cookie travels
    for (const n of ['strata-api', 'strata-worker'])
      expect(s[n].environment!.STRATA_PAYLOAD_KEYS, n).toMatch(/^\$\{STRATA_PAYLOAD_KEYS:\?/);
  });

  it('gives Temporal, the metastore and the worker database roles of their own, made by the init script', async () => {
    const pg = s.postgres;
    const mount = pg.volumes!.find((v) => v.includes(':/docker-entrypoint-initdb.d/'))!;
    expect(mount, 'an init script is mounted').toBeDefined();
    const script = await readFile(path.join(ROOT, mount.split(':')[0]), 'utf8');
    const superuser = pg.environment!.POSTGRES_USER;
    const users = {
      temporal: s.temporal.environment!.POSTGRES_USER,
      metastore: new URL(s['strata-api'].environment!.DATABASE_URL.replace(/\$\{[^}]+\}/g, 'x')).username,
      worker: new URL(s['strata-worker'].environment!.DATABASE_URL.replace(/\$\{[^}]+\}/g, 'x')).username,
    };
    expect(new Set(Object.values(users)).size).toBe(3);
    for (const [who, user] of Object.entries(users)) {
      expect(user, who).not.toBe(superuser);
      expect(script, who).toMatch(new RegExp(`CREATE ROLE ${user} LOGIN PASSWORD :'\\w+'`));
    }
    // Each role's password is its own variable, passed to the init script and to its user.
    for (const m of script.matchAll(/-v \w+="\$(\w+)"/g))
      expect(pg.environment![m[1]], m[1]).toMatch(new RegExp(`^\\$\\{${m[1]}:\\?`));
    expect(s.temporal.environment!.POSTGRES_PWD).toMatch(/^\$\{TEMPORAL_DB_PASSWORD/);
    expect(s['strata-api'].environment!.DATABASE_URL).toContain('${STRATA_METASTORE_DB_PASSWORD}');
    expect(s['strata-worker'].environment!.DATABASE_URL).toContain('${STRATA_WORKER_DB_PASSWORD}');
    // Temporal's databases are made for it (it may not create any), owned by its role.
    expect(s.temporal.environment!.SKIP_DB_CREATE).toBe('true');
    for (const db of [s.temporal.environment!.DBNAME, s.temporal.environment!.VISIBILITY_DBNAME])
      expect(script).toContain(`CREATE DATABASE ${db} OWNER ${users.temporal};`);
    // The worker may read and write the metastore's tables but not change its schema.
    expect(script).toContain(`GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${users.worker}`);
    expect(script).not.toMatch(new RegExp(`GRANT (ALL|CREATE)[^;]*TO ${users.worker}`));
  });

  it('builds an image with every source folder the processes import', async () => {
    const docker = await readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const dir of ['schemas', 'workflows', 'activities', 'workers', 'api', 'client', 'store', 'cli'])
      expect(docker, dir).toMatch(new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'));
  });

  it('keeps secrets out of the file', () => {
    for (const svc of Object.values(s))
      for (const [k, v] of Object.entries(svc.environment ?? {}))
        if (/PASSWORD|SECRET|KEY|PWD/.test(k)) expect(String(v), k).toMatch(/^\$\{[A-Z0-9_]+(:\?[^}]*)?\}$/);
  });
});
