/**
 * Temporal adapters for object storage tasks. Paths are lake keys (relative to the lake
 * root) or full URIs (s3://…, file://…) opened with the worker's S3 settings.
 */
import { NonRetryableError, taskActivity } from '../core/task.js';
import { openStore, type ObjectStore, type S3Config } from './client.js';

export interface S3Deps {
  store: ObjectStore;
  s3?: S3Config;
}

/** A path as (store, key): lake-relative keys use the lake, URIs their own root. */
function locate(deps: S3Deps, p: string): { store: ObjectStore; key: string; inLake: boolean } {
  if (/^(s3|file):\/\//.test(p)) {
    if (p.startsWith(deps.store.root + '/') || p === deps.store.root) return { store: deps.store, key: p.slice(deps.store.root.length + 1), inLake: true };
    const u = new URL(p);
    const root = p.startsWith('s3://') ? `s3://${u.hostname}` : 'file:///';
    return { store: openStore(root, deps.s3), key: p.startsWith('s3://') ? u.pathname.replace(/^\//, '') : decodeURIComponent(u.pathname).replace(/^\//, ''), inLake: false };
  }
  return { store: deps.store, key: p, inLake: true };
}

export function createS3Activities(getDeps: () => S3Deps | undefined) {
  const need = () => {
    const d = getDeps();
    if (!d) throw new NonRetryableError('this worker has no lake store configured', 'ConfigError');
    return d;
  };
  return {
    /** One sensor check: done when the key / prefix holds enough objects (and the marker). */
    s3Check: taskActivity(async ({ task }) => {
      const { store, key } = locate(need(), String(task.path));
      const min = Number(task.minCount ?? 1);
      if (!key.endsWith('/')) {
        const h = await store.head(key);
        return h ? { done: true, count: 1, bytes: h.size } : { done: false, reason: `${store.uri(key)} does not exist yet` };
      }
      const objs = (await store.list(key)).filter((o) => !/(^|\/)[_.][^/]*$/.test(o.key.slice(key.length)));
      if (task.marker && !(await store.head(`${key}${String(task.marker)}`))) return { done: false, count: objs.length, reason: `marker ${String(task.marker)} not under ${store.uri(key)} yet` };
      if (objs.length < min) return { done: false, count: objs.length, reason: `${objs.length} of ${min} objects under ${store.uri(key)}` };
      return { done: true, count: objs.length, bytes: objs.reduce((s, o) => s + o.size, 0) };
    }),
    s3Copy: taskActivity(async ({ task }) => {
      const d = need();
      const from = locate(d, String(task.from));
      const to = locate(d, String(task.to));
      const keys = from.key.endsWith('/') ? (await from.store.list(from.key)).map((o) => o.key) : [from.key];
      if (!keys.length || (!from.key.endsWith('/') && !(await from.store.head(from.key)))) throw new NonRetryableError(`nothing to copy at ${from.store.uri(from.key)}`, 'SourceError');
      for (const k of keys) {
        const dst = from.key.endsWith('/') ? `${to.key.replace(/\/?$/, '/')}${k.slice(from.key.length)}` : to.key.endsWith('/') ? `${to.key}${k.split('/').pop()}` : to.key;
        if (from.store === to.store) await from.store.copy(k, dst);
        else await to.store.putBytes(dst, await from.store.getBytes(k));
      }
      return { count: keys.length, location: to.store.uri(to.key) };
    }),
    s3List: taskActivity(async ({ task }) => {
      const { store, key } = locate(need(), String(task.prefix));
      const objs = await store.list(key);
      return { count: objs.length, bytes: objs.reduce((s, o) => s + o.size, 0), keys: objs.slice(0, 100).map((o) => o.key), truncated: objs.length > 100 };
    }),
    s3Delete: taskActivity(async ({ task }) => {
      const { store, key, inLake } = locate(need(), String(task.path));
      if (!inLake && !task.allowOutsideLake) throw new NonRetryableError(`refusing to delete ${String(task.path)}: it is outside the lake root ${need().store.root}; set "allowOutsideLake: true" if you mean it`, 'ConfigError');
      if (!key) throw new NonRetryableError('refusing to delete the whole lake root: name a path inside it', 'ConfigError');
      const keys = task.recursive ? (await store.list(key.replace(/\/?$/, '/'))).map((o) => o.key) : [key];
      await store.delete(keys);
      return { count: keys.length };
    }),
  };
}
