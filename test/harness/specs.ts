/** Builds validated specs inline for tests. */
import { parse } from 'yaml';
import { errorMessage } from '../../schemas/errors.js';
import { validateSpec, type PipelineSpec } from '../../schemas/pipeline.js';

export function spec(yamlOrObject: string | object): PipelineSpec {
  const doc = typeof yamlOrObject === 'string' ? parse(yamlOrObject) : yamlOrObject;
  const r = validateSpec(doc);
  if (!r.ok) throw new Error(`test spec invalid: ${JSON.stringify(r.problems)}`);
  return r.spec;
}

/** Polls until check() holds (errors count as "not yet"; the last one is named if time runs out). */
export async function waitFor(check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    const ok = await check().catch((e: unknown) => {
      last = e;
      return false;
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `condition not met in ${ms} ms${last === undefined ? '' : `; the last check threw: ${errorMessage(last)}`}`,
  );
}
