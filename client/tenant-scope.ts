/**
 * The tenant a client call acts for, when the call itself names no workflow: the codec
 * encrypts a schedule's memo, for example, with no workflow id to read the tenant from.
 * The API and CLI wrap such calls in `withTenant(tenant, fn)`.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const scope = new AsyncLocalStorage<string>();

export function withTenant<T>(tenant: string, fn: () => T): T {
  return scope.run(tenant, fn);
}

export function currentTenant(): string | undefined {
  return scope.getStore();
}
