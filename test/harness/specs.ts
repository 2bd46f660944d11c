/** Builds validated specs inline for tests. */
import { parse } from 'yaml';
import { validateSpec, type PipelineSpec } from '../../schemas/pipeline.js';

export function spec(yamlOrObject: string | object): PipelineSpec {
  const doc = typeof yamlOrObject === 'string' ? parse(yamlOrObject) : yamlOrObject;
  const r = validateSpec(doc);
  if (!r.ok) throw new Error(`test spec invalid: ${JSON.stringify(r.problems)}`);
  return r.spec;
}

/** Polls until check() holds (errors count as "not yet"). */
export async function waitFor(check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}
