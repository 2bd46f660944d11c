/**
 * Temporal adapters for object storage tasks. Paths are keys in the tenant's lake
 * (relative), or URIs (s3://…, file://…) that must fall inside the tenant's lake or a
 * location the platform operator allowed for the tenant (STRATA_TENANT_LOCATIONS).
 */
import type { TaskActivityInput } from '../../schemas/run.js';
import { NonRetryableError } from '../../schemas/errors.js';
import { taskActivity } from '../core/task.js';
import type { LakeDeps } from '../lake/engine.js';
import { allowedLocations, forTenant } from '../lake/open.js';
import type { S3Config } from './client.js';
import { locate as locateFor, type Located } from './tenant.js';

export interface S3Deps {
  lake: LakeDeps;
  s3?: S3Config;
}

export function createS3Activities(getDeps: () => S3Deps | undefined) {
  /** Resolves a path of this task's tenant; anything outside its reach fails the task. */
  const locator = (input: TaskActivityInput): ((p: string) => Located) => {
    const d = getDeps();
    if (!d) throw new NonRetryableError('this worker has no lake store configured', 'ConfigError');
    const lake = forTenant(d.lake, input.run.tenant).store;
    const allowed = allowedLocations(d.lake, input.run.tenant);
    return (p) => locateFor({ lake, allowed, s3: d.s3 }, p);
  };
  return {
    /** One sensor check: done when the key / prefix holds enough objects (and the marker). */
    s3Check: taskActivity(async (input) => {
      const { task } = input;
      const { store, key } = locator(input)(String(task.path));
      const min = Number(task.minCount ?? 1);
      if (!key.endsWith('/')) {
        const h = await store.head(key);
        return h
          ? { done: true, count: 1, bytes: h.size }
          : { done: false, reason: `${store.uri(key)} does not exist yet` };
      }
      const objs = (await store.list(key)).filter((o) => !/(^|\/)[_.][^/]*$/.test(o.key.slice(key.length)));
      const marker = typeof task.marker === 'string' ? task.marker : undefined;
      if (marker && !(await store.head(`${key}${marker}`)))
        return {
          done: false,
          count: objs.length,
          reason: `marker ${marker} not under ${store.uri(key)} yet`,
        };
      if (objs.length < min)
        return { done: false, count: objs.length, reason: `${objs.length} of ${min} objects under ${store.uri(key)}` };
      return { done: true, count: objs.length, bytes: objs.reduce((s, o) => s + o.size, 0) };
    }),
    s3Copy: taskActivity(async (input) => {
      const { task } = input;
      const locate = locator(input);
      const from = locate(String(task.from));
      const to = locate(String(task.to));
      const keys = from.key.endsWith('/') ? (await from.store.list(from.key)).map((o) => o.key) : [from.key];
      if (!keys.length || (!from.key.endsWith('/') && !(await from.store.head(from.key))))
        throw new NonRetryableError(`nothing to copy at ${from.store.uri(from.key)}`, 'SourceError');
      for (const k of keys) {
        const dst = from.key.endsWith('/')
          ? `${to.key.replace(/\/?$/, '/')}${k.slice(from.key.length)}`
          : to.key.endsWith('/')
            ? `${to.key}${k.split('/').pop()}`
            : to.key;
        if (from.store === to.store) await from.store.copy(k, dst);
        else await to.store.putBytes(dst, await from.store.getBytes(k));
      }
      return { count: keys.length, location: to.store.uri(to.key) };
    }),
    s3List: taskActivity(async (input) => {
      const { task } = input;
      const { store, key } = locator(input)(String(task.prefix));
      const objs = await store.list(key);
      return {
        count: objs.length,
        bytes: objs.reduce((s, o) => s + o.size, 0),
        keys: objs.slice(0, 100).map((o) => o.key),
        truncated: objs.length > 100,
      };
    }),
    s3Delete: taskActivity(async (input) => {
      const { task } = input;
      const { store, key } = locator(input)(String(task.path));
      if (!key || key === '/')
        throw new NonRetryableError(
          'refusing to delete a whole lake or location root: name a path inside it',
          'ConfigError',
        );
      const keys = task.recursive ? (await store.list(key.replace(/\/?$/, '/'))).map((o) => o.key) : [key];
      await store.delete(keys);
      return { count: keys.length };
    }),
  };
}
