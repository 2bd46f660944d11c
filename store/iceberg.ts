/**
 * Typed queries over the Iceberg catalog tables (migration 120): namespaces, table
 * pointers with their metadata, idempotency keys. Moving a table's pointer is a
 * compare-and-set on the metadata location it was read at; false means someone else
 * committed first.
 */
import { parseJson, stringifyJson } from '../schemas/json64.js';
import type { Db } from './db.js';

export const NS_SEP = '\u001f';

export interface IcebergTableRow {
  tenant: string;
  namespace: string[];
  name: string;
  metadataLocation: string;
  // The table metadata JSON (activities/iceberg/metadata.ts TableMetadata).
  metadata: Record<string, unknown>;
}

type Row = Record<string, unknown>;
const toRow = (r: Row): IcebergTableRow => ({
  tenant: String(r.tenant),
  namespace: String(r.namespace).split(NS_SEP),
  name: String(r.name),
  metadataLocation: String(r.metadata_location),
  // Read as text: snapshot ids are 64-bit (activities/iceberg/json.ts).
  metadata: parseJson<Record<string, unknown>>(String(r.metadata)),
});

export class IcebergStore {
  constructor(readonly db: Db) {}

  async namespaceExists(tenant: string, ns: string[]): Promise<boolean> {
    const r = await this.db.query(`SELECT 1 FROM iceberg_namespaces WHERE tenant=$1 AND namespace=$2`, [
      tenant,
      ns.join(NS_SEP),
    ]);
    return r.rowCount > 0;
  }

  async namespace(tenant: string, ns: string[]): Promise<Record<string, string> | undefined> {
    const r = await this.db.query<{ properties: unknown }>(
      `SELECT properties FROM iceberg_namespaces WHERE tenant=$1 AND namespace=$2`,
      [tenant, ns.join(NS_SEP)],
    );
    const p = r.rows[0]?.properties;
    return p === undefined ? undefined : ((typeof p === 'string' ? JSON.parse(p) : p) as Record<string, string>);
  }

  /** Creates a namespace; false when it already exists. */
  async createNamespace(tenant: string, ns: string[], properties: Record<string, string>): Promise<boolean> {
    const r = await this.db.query(
      `INSERT INTO iceberg_namespaces (tenant, namespace, properties) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING`,
      [tenant, ns.join(NS_SEP), JSON.stringify(properties)],
    );
    return r.rowCount > 0;
  }

  /** Makes sure a namespace and its parents exist (datasets written by Strata's tasks). */
  async ensureNamespace(tenant: string, ns: string[]): Promise<void> {
    for (let i = 1; i <= ns.length; i++) await this.createNamespace(tenant, ns.slice(0, i), {});
  }

  async listNamespaces(tenant: string, parent: string[]): Promise<string[][]> {
    const r = await this.db.query<{ namespace: string }>(
      `SELECT namespace FROM iceberg_namespaces WHERE tenant=$1 ORDER BY namespace`,
      [tenant],
    );
    return r.rows
      .map((x) => x.namespace.split(NS_SEP))
      .filter((n) => n.length === parent.length + 1 && parent.every((p, i) => n[i] === p));
  }

  async setNamespaceProperties(tenant: string, ns: string[], properties: Record<string, string>): Promise<void> {
    await this.db.query(`UPDATE iceberg_namespaces SET properties=$3 WHERE tenant=$1 AND namespace=$2`, [
      tenant,
      ns.join(NS_SEP),
      JSON.stringify(properties),
    ]);
  }

  /** Drops an empty namespace: 'missing', 'not_empty' or 'dropped'. */
  async dropNamespace(tenant: string, ns: string[]): Promise<'missing' | 'not_empty' | 'dropped'> {
    return this.db.tx(async (t) => {
      const key = ns.join(NS_SEP);
      const tables = await t.query(`SELECT 1 FROM iceberg_tables WHERE tenant=$1 AND namespace=$2 LIMIT 1`, [
        tenant,
        key,
      ]);
      const children = await t.query(`SELECT 1 FROM iceberg_namespaces WHERE tenant=$1 AND namespace LIKE $2 LIMIT 1`, [
        tenant,
        `${key.replace(/[\\%_]/g, (c) => `\\${c}`)}${NS_SEP}%`,
      ]);
      if (tables.rowCount || children.rowCount) return 'not_empty';
      const r = await t.query(`DELETE FROM iceberg_namespaces WHERE tenant=$1 AND namespace=$2`, [tenant, key]);
      return r.rowCount ? 'dropped' : 'missing';
    });
  }

  async listTables(tenant: string, ns: string[]): Promise<string[]> {
    const r = await this.db.query<{ name: string }>(
      `SELECT name FROM iceberg_tables WHERE tenant=$1 AND namespace=$2 ORDER BY name`,
      [tenant, ns.join(NS_SEP)],
    );
    return r.rows.map((x) => x.name);
  }

  async table(tenant: string, ns: string[], name: string, forUpdate = false): Promise<IcebergTableRow | undefined> {
    const r = await this.db.query(
      `SELECT tenant, namespace, name, metadata_location, metadata::text AS metadata FROM iceberg_tables WHERE tenant=$1 AND namespace=$2 AND name=$3${forUpdate ? ' FOR UPDATE' : ''}`,
      [tenant, ns.join(NS_SEP), name],
    );
    return r.rows[0] ? toRow(r.rows[0]) : undefined;
  }

  /** Inserts a new table; false when the name is taken. */
  async createTable(tenant: string, ns: string[], name: string, location: string, metadata: object): Promise<boolean> {
    const r = await this.db.query(
      `INSERT INTO iceberg_tables (tenant, namespace, name, metadata_location, metadata) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING`,
      [tenant, ns.join(NS_SEP), name, location, stringifyJson(metadata)],
    );
    return r.rowCount > 0;
  }

  /** Moves the pointer from `expected` to `location`; false when the table moved meanwhile. */
  async swap(
    tenant: string,
    ns: string[],
    name: string,
    expected: string,
    location: string,
    metadata: object,
  ): Promise<boolean> {
    const r = await this.db.query(
      `UPDATE iceberg_tables SET metadata_location=$5, metadata=$6, updated_at=now()
       WHERE tenant=$1 AND namespace=$2 AND name=$3 AND metadata_location=$4`,
      [tenant, ns.join(NS_SEP), name, expected, location, stringifyJson(metadata)],
    );
    return r.rowCount > 0;
  }

  async dropTable(tenant: string, ns: string[], name: string): Promise<IcebergTableRow | undefined> {
    const r = await this.db.query(
      `DELETE FROM iceberg_tables WHERE tenant=$1 AND namespace=$2 AND name=$3 RETURNING tenant, namespace, name, metadata_location, metadata::text AS metadata`,
      [tenant, ns.join(NS_SEP), name],
    );
    return r.rows[0] ? toRow(r.rows[0]) : undefined;
  }

  /** Renames within the tenant: 'missing', 'exists' (destination taken) or 'renamed'. */
  async renameTable(
    tenant: string,
    from: { ns: string[]; name: string },
    to: { ns: string[]; name: string },
  ): Promise<'missing' | 'exists' | 'renamed'> {
    return this.db.tx(async (t) => {
      const taken = await t.query(`SELECT 1 FROM iceberg_tables WHERE tenant=$1 AND namespace=$2 AND name=$3`, [
        tenant,
        to.ns.join(NS_SEP),
        to.name,
      ]);
      if (taken.rowCount) return 'exists';
      const r = await t.query(
        `UPDATE iceberg_tables SET namespace=$4, name=$5, updated_at=now() WHERE tenant=$1 AND namespace=$2 AND name=$3`,
        [tenant, from.ns.join(NS_SEP), from.name, to.ns.join(NS_SEP), to.name],
      );
      return r.rowCount ? 'renamed' : 'missing';
    });
  }

  async idempotent(
    tenant: string,
    key: string,
  ): Promise<{ route: string; status: number; response: unknown } | undefined> {
    const r = await this.db.query<{ route: string; status: number; response: string | null }>(
      `SELECT route, status, response::text AS response FROM iceberg_idempotency WHERE tenant=$1 AND key=$2`,
      [tenant, key],
    );
    const x = r.rows[0];
    return x && { ...x, response: x.response === null ? undefined : parseJson(x.response) };
  }

  async rememberIdempotent(
    tenant: string,
    key: string,
    route: string,
    status: number,
    response: unknown,
  ): Promise<void> {
    await this.db.query(
      `INSERT INTO iceberg_idempotency (tenant, key, route, status, response) VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING`,
      [tenant, key, route, status, response === undefined ? null : stringifyJson(response)],
    );
  }
}
