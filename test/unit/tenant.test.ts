/** The storage boundary's pure parts: locations, allow-lists, tenant stores, path rewriting, sandbox limits. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../../activities/s3/client.js';
import { locate, tenantFolder, tenantStore } from '../../activities/s3/tenant.js';
import { absolutePaths, openDuck } from '../../activities/sql/sandbox.js';
import { locationProblem } from '../../schemas/lake.js';
import { normaliseLocation, parseTenantLakes, parseTenantLocations } from '../../schemas/tenant.js';
import { tempDir } from '../harness/tmp.js';

describe('normaliseLocation', () => {
  it('folds slashes and decodes file URIs, and refuses what could walk around a prefix check', () => {
    expect(normaliseLocation('s3://lake//acme///x')).toBe('s3://lake/acme/x');
    expect(normaliseLocation('/srv/a%20b/c')).toBe('file:///srv/a%20b/c');
    expect(normaliseLocation('file:///srv/a%2520b/c')).toBe('file:///srv/a%20b/c');
    expect(normaliseLocation('file:///srv/a%20b/c')).toBe('file:///srv/a b/c');
    for (const bad of [
      's3://lake/acme/../globex/x',
      'file:///srv/acme/%2e%2e/globex',
      '/srv/./x',
      'http://x/y',
      's3:///nobucket',
      'file://host/x',
      'file:///a\u0000b',
    ])
      expect(() => normaliseLocation(bad), bad).toThrow();
  });
});

describe('configuration of tenant locations and lakes', () => {
  it('parses allow-lists per tenant and says what is wrong', () => {
    expect(parseTenantLocations('acme=s3://partner/acme/|file:///srv/exports/acme/, globex=s3://g/')).toEqual({
      acme: ['s3://partner/acme/', 'file:///srv/exports/acme/'],
      globex: ['s3://g/'],
    });
    expect(() => parseTenantLocations('acme=s3://partner/acme')).toThrow(/must end with "\/"/);
    expect(() => parseTenantLocations('Acme=s3://p/')).toThrow(/should be TENANT=URI/);
    expect(() => parseTenantLocations('acme=s3://p/../q/')).toThrow(/"\." or "\.\." segments/);
    expect(Object.getPrototypeOf(parseTenantLocations(''))).toBeNull();
  });

  it('refuses tenant lakes that overlap each other or the shared lake', () => {
    expect(parseTenantLakes('acme=s3://acme-lake/prod', 's3://lake/main')).toEqual({ acme: 's3://acme-lake/prod' });
    expect(() => parseTenantLakes('acme=s3://lake/main/acme', 's3://lake/main')).toThrow(/overlaps the shared lake/);
    expect(() => parseTenantLakes('acme=s3://x/a,globex=s3://x/a/b')).toThrow(/lakes of acme and globex overlap/);
  });
});

describe('tenantStore and locate', () => {
  it('keeps every key of a tenant under its prefix, and never lists a sibling whose name starts alike', async () => {
    const dir = await tempDir('strata-tenant-');
    const lake = openStore(dir);
    await lake.putBytes('acme/landing/a.csv', 'a');
    await lake.putBytes('acme-evil/landing/b.csv', 'b');
    const acme = tenantStore(lake, 'acme');
    expect((await acme.list('')).map((o) => o.key)).toEqual(['landing/a.csv']);
    expect(acme.root).toBe(lake.uri('acme'));
    await acme.putBytes('x/y.txt', 'y');
    expect(await readFile(path.join(dir, 'acme/x/y.txt'), 'utf8')).toBe('y');
    await expect(acme.getBytes('../acme-evil/landing/b.csv')).rejects.toThrow(/climbs out of the tenant's lake/);
    expect(() => tenantStore(lake, '../x')).toThrow(/not a valid tenant name/);
    expect(tenantFolder('/lake', 'acme')).toBe('/lake/acme');
  });

  it('resolves lake paths and URIs inside the tenant lake or its allowed locations, and refuses the rest with the fix', () => {
    const s3 = { region: 'us-east-1', endpoint: 'http://127.0.0.1:9' };
    const lake = tenantStore(openStore('s3://lake/main', s3), 'acme');
    const allowed = ['s3://partner/acme/'];
    const o = { lake, allowed, s3 };
    expect(locate(o, 'landing/x.csv')).toMatchObject({ key: 'landing/x.csv', inLake: true });
    expect(locate(o, 's3://lake/main/acme/landing/x.csv')).toMatchObject({ key: 'landing/x.csv', inLake: true });
    expect(locate(o, 's3://partner/acme/in/x.csv')).toMatchObject({ key: 'in/x.csv', inLake: false });
    for (const bad of [
      's3://lake/main/globex/x.csv',
      's3://lake/main/acme-evil/x',
      's3://partner/acmeX/x',
      'file:///etc/passwd',
      '/etc/passwd',
      'http://x/y',
      '../globex/x',
      's3://lake/main/acme/../globex/x',
    ])
      expect(() => locate(o, bad), bad).toThrow(/outside your lake|climbs out|scheme|segments/);
  });

  it('flags locations at registration: other schemes, "..", control characters', () => {
    expect(locationProblem('landing/{{ ds }}/x.csv')).toBeUndefined();
    expect(locationProblem('s3://bucket/x')).toBeUndefined();
    expect(locationProblem('../x')).toMatch(/climbs out/);
    expect(locationProblem('a/../../x')).toMatch(/climbs out/);
    expect(locationProblem('http://evil/x')).toMatch(/scheme/);
    expect(locationProblem('a\nb')).toMatch(/control/);
  });
});

describe('absolutePaths', () => {
  it('rewrites the file arguments of readers and FROM scans to the tenant folder, and nothing else', () => {
    expect(absolutePaths("SELECT * FROM read_csv('orders.csv') WHERE name = 'orders.csv'", '/l/acme')).toBe(
      "SELECT * FROM read_csv('/l/acme/orders.csv') WHERE name = 'orders.csv'",
    );
    expect(absolutePaths("SELECT * FROM read_parquet(['a.parquet', 'b/c.parquet'])", '/l/acme')).toBe(
      "SELECT * FROM read_parquet(['/l/acme/a.parquet', '/l/acme/b/c.parquet'])",
    );
    expect(absolutePaths("SELECT * FROM 'x.csv' JOIN 'y.csv' USING (id)", '/l/acme')).toBe(
      "SELECT * FROM '/l/acme/x.csv' JOIN '/l/acme/y.csv' USING (id)",
    );
    expect(absolutePaths("SELECT * FROM read_text('/etc/passwd') -- read_csv('z')", '/l/acme')).toBe(
      "SELECT * FROM read_text('/etc/passwd') -- read_csv('z')",
    );
    expect(absolutePaths("SELECT * FROM read_csv('it''s.csv')", '/l/acme')).toBe(
      "SELECT * FROM read_csv('/l/acme/it''s.csv')",
    );
  });
});

describe('the DuckDB sandbox', () => {
  it('applies the limits and locks them', async () => {
    const dir = await tempDir('strata-sandbox-');
    await mkdir(path.join(dir, 'own'));
    await writeFile(path.join(dir, 'own', 'a.csv'), 'x\n1\n');
    const duck = await openDuck();
    try {
      await duck.lock({
        files: [],
        dirs: [path.join(dir, 'own')],
        scratch: path.join(dir, 'scratch'),
        limits: { memory: '64MB', threads: 1, temp: '16MB' },
      });
      const s = (
        await duck.conn.runAndReadAll(
          "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit', 'threads', 'max_temp_directory_size', 'enable_external_access', 'lock_configuration', 'autoload_known_extensions') ORDER BY name",
        )
      ).getRows();
      expect(Object.fromEntries(s)).toMatchObject({
        threads: '1',
        enable_external_access: 'false',
        lock_configuration: 'true',
        autoload_known_extensions: 'false',
      });
      expect(String(Object.fromEntries(s).memory_limit)).toMatch(/^6[0-9](\.\d+)? MiB$/);
      expect(
        (
          await duck.conn.runAndReadAll(`SELECT count(*) FROM read_csv('${path.join(dir, 'own', 'a.csv')}')`)
        ).getRows()[0][0],
      ).toBe(1n);
      await expect(duck.conn.run("SET memory_limit = '8GB'")).rejects.toThrow(/locked/);
      // Over the memory and temp limits a query fails; it does not take the machine.
      await expect(duck.conn.run('SELECT list(range) FROM range(50000000)')).rejects.toThrow(
        /Out of Memory|memory|temp/i,
      );
    } finally {
      await duck.close();
    }
  });
});
