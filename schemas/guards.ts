/**
 * Type guards for values whose shape is not known yet (JSON bodies, driver rows, thrown
 * values): they check, so what they narrow to is true at run time.
 */

/** A plain object (not null, not an array): its fields are still `unknown`. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The object itself when it is one, else an empty one. */
export function recordOf(v: unknown): Record<string, unknown> {
  return isRecord(v) ? v : {};
}

/** True when `o` has a field for each of `keys`. */
export function hasKeys<K extends string, V>(keys: readonly K[], o: Partial<Record<K, V>>): o is Record<K, V> {
  return keys.every((k) => Object.hasOwn(o, k));
}

/** An object with one field per key, each made by `f`: typed by its keys, and checked complete. */
export function recordFor<K extends string, V>(keys: readonly K[], f: (k: K) => V): Record<K, V> {
  const out: Partial<Record<K, V>> = {};
  for (const k of keys) out[k] = f(k);
  if (!hasKeys(keys, out)) throw new Error('recordFor: a key was left out');
  return out;
}
