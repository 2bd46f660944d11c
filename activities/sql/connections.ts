/**
 * Named connections. Specs name a connection ("warehouse"); the worker's environment
 * holds its URL (STRATA_CONN_WAREHOUSE=postgres://…) and the tenants it belongs to
 * (STRATA_CONN_WAREHOUSE_TENANTS=acme,globex; without it, the bootstrap tenant's only).
 * A task may use only its own tenant's connections; an unknown and a foreign name get the
 * same answer, which lists the tenant's own. URLs carry secrets, so only the name ever
 * reaches workflow history, logs or error messages.
 */
import { tenantScopedEnv } from '../../schemas/tenant.js';
import { NonRetryableError } from '../../schemas/errors.js';

export interface ConnectionConfig {
  name: string;
  engine: 'postgres' | 'mysql';
  url: string;
  /** The tenants whose tasks may use it. */
  tenants: string[];
}

export type Connections = Record<string, ConnectionConfig>;

export function connectionsFromEnv(env: NodeJS.ProcessEnv = process.env): Connections {
  // fromEntries defines own fields, so no name (`__proto__` included) reaches the prototype.
  return Object.fromEntries(
    tenantScopedEnv(env, 'STRATA_CONN_').map(({ key, name, value, tenants }) => [
      name,
      { name, engine: engineOf(value, key), url: value, tenants },
    ]),
  );
}

/** The names of the connections a tenant may use. */
export function tenantConnections(conns: Connections, tenant: string): string[] {
  return Object.keys(conns)
    .filter((n) => conns[n].tenants.includes(tenant))
    .sort();
}

function engineOf(url: string, key: string): ConnectionConfig['engine'] {
  if (/^postgres(ql)?:\/\//.test(url)) return 'postgres';
  if (/^(mysql|mariadb):\/\//.test(url)) return 'mysql';
  throw new Error(`${key} must be a postgres:// or mysql:// URL`);
}

export function resolveConnection(
  conns: Connections,
  name: string,
  engine: string | undefined,
  tenant: string,
): ConnectionConfig {
  const key = name.toLowerCase();
  const c = Object.hasOwn(conns, key) ? conns[key] : undefined;
  if (!c || !c.tenants.includes(tenant)) {
    const own = tenantConnections(conns, tenant);
    throw new NonRetryableError(
      `unknown connection "${name}" for tenant ${tenant}: ` +
        `${own.length ? `use one of ${own.join(', ')}` : 'this tenant has no connections'}, ` +
        `or ask the platform operator to add it ` +
        `(STRATA_CONN_${key.toUpperCase().replace(/[^A-Z0-9_]/g, '_')} and STRATA_CONN_…_TENANTS on the worker)`,
      'ConfigError',
    );
  }
  if (engine && c.engine !== engine)
    throw new NonRetryableError(
      `connection "${name}" is a ${c.engine} connection, but the task says engine ${engine}`,
      'ConfigError',
    );
  return c;
}

/** Removes credentials from a message that might quote a URL. */
export function redact(message: string): string {
  return message.replace(/([a-z]+:\/\/)([^:@/\s]+):([^@/\s]+)@/gi, '$1$2:***@');
}
