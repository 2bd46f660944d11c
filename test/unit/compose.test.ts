/** docker-compose.yml cannot run here (no Docker engine); this keeps it honest instead. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../schemas/config.js';
import { ROOT } from '../harness/processes.js';

describe('docker-compose.yml', async () => {
  const compose = parse(await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { environment?: Record<string, string>; ports?: string[]; command?: string[]; build?: string; depends_on?: unknown }> };
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
      for (const k of Object.keys(env)) expect(known.has(k) || k.startsWith('STRATA_CONN_'), `${name}: ${k}`).toBe(true);
      // ${VAR} references stand in for secrets: substitute placeholders and validate.
      const filled = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v).replace(/\$\{[^}]+\}/g, 'placeholder-secret-value-123')]));
      const r = ConfigSchema.safeParse(filled);
      expect(r.success, `${name}: ${JSON.stringify(r.error?.issues)}`).toBe(true);
      expect(s[name].build).toBe('.');
    }
  });

  it('gives the Temporal server the dynamic config Strata needs (updates, update-with-start)', async () => {
    const t = s.temporal as { environment: Record<string, string>; volumes?: string[] };
    const mount = t.volumes?.find((v) => v.endsWith(`/etc/temporal/${t.environment.DYNAMIC_CONFIG_FILE_PATH}:ro`));
    expect(mount, 'a volume mounts the file DYNAMIC_CONFIG_FILE_PATH names').toBeDefined();
    const dc = parse(await readFile(path.join(ROOT, mount!.split(':')[0]), 'utf8')) as Record<string, { value: unknown }[]>;
    expect(dc['frontend.enableUpdateWorkflowExecution']?.[0]?.value).toBe(true);
    expect(dc['frontend.enableExecuteMultiOperation']?.[0]?.value).toBe(true);
  });

  it('points Strata at the Temporal and Postgres services on the ports they expose', () => {
    const api = s['strata-api'].environment!;
    const worker = s['strata-worker'].environment!;
    for (const env of [api, worker]) {
      const [host, port] = env.TEMPORAL_ADDRESS.split(':');
      expect(s[host], host).toBeDefined();
      expect(s.temporal.ports!.some((p) => p.endsWith(`:${port}`))).toBe(true);
      expect(new URL(env.DATABASE_URL.replace(/\$\{[^}]+\}/g, 'x')).host).toBe('postgres:5432');
    }
    expect(s['strata-api'].ports).toContain(`${api.STRATA_API_PORT}:${api.STRATA_API_PORT}`);
    expect(api.STRATA_API_HOST).toBe('0.0.0.0');
    expect(s['temporal-ui'].environment!.TEMPORAL_ADDRESS).toBe(api.TEMPORAL_ADDRESS);
  });

  it('keeps secrets out of the file', () => {
    for (const svc of Object.values(s))
      for (const [k, v] of Object.entries(svc.environment ?? {}))
        if (/PASSWORD|SECRET|KEY|PWD/.test(k)) expect(String(v), k).toMatch(/^\$\{[A-Z0-9_]+(:\?[^}]*)?\}$/);
  });
});
