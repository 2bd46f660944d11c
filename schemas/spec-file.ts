import { parse as parseYaml, YAMLParseError } from 'yaml';
import { validateSpec, type ValidationResult } from './pipeline.js';

/** Parses a YAML (or JSON) spec text and validates it. */
export function parseSpecText(text: string): ValidationResult {
  let doc: unknown;
  try {
    doc = parseYaml(text, { uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message : String(e);
    return { ok: false, problems: [{ path: '(yaml)', message: `not valid YAML: ${msg}` }] };
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    return { ok: false, problems: [{ path: '(root)', message: 'a spec is a mapping with "id" and "tasks"' }] };
  return validateSpec(doc);
}
