/**
 * Named connections. Specs name a connection ("warehouse"); the worker's environment
 * holds its URL (STRATA_CONN_WAREHOUSE=postgres://…). URLs carry secrets, so only the
 * name ever reaches workflow history, logs or error messages.
 */
import { NonRetryableError } from '../core/task.js';

export interface ConnectionConfig {
  name: string;
  engine: 'postgres' | 'mysql';
  url: string;
}

export type Connections = Record<string, ConnectionConfig>;

export function connectionsFromEnv(env: NodeJS.ProcessEnv = process.env): Connections {
  const out: Connections = {};
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('STRATA_CONN_') || !v) continue;
    const name = k.slice('STRATA_CONN_'.length).toLowerCase();
    out[name] = { name, engine: engineOf(v, k), url: v };
  }
  return out;
}

function engineOf(url: string, key: string): ConnectionConfig['engine'] {
  if (/^postgres(ql)?:\/\//.test(url)) return 'postgres';
  if (/^(mysql|mariadb):\/\//.test(url)) return 'mysql';
  throw new Error(`${key} must be a postgres:// or mysql:// URL`);
}

export function resolveConnection(conns: Connections, name: string, engine: string): ConnectionConfig {
  const c = conns[name.toLowerCase()];
  if (!c) {
    const known = Object.keys(conns);
    throw new NonRetryableError(
      `unknown connection "${name}": set STRATA_CONN_${name.toUpperCase()} on the worker${known.length ? ` or use one of ${known.join(', ')}` : ''}`,
      'ConfigError',
    );
  }
  if (c.engine !== engine) throw new NonRetryableError(`connection "${name}" is a ${c.engine} connection, but the task says engine ${engine}`, 'ConfigError');
  return c;
}

/** Removes credentials from a message that might quote a URL. */
export function redact(message: string): string {
  return message.replace(/([a-z]+:\/\/)([^:@/\s]+):([^@/\s]+)@/gi, '$1$2:***@');
}
