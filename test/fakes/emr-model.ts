/**
 * Checks JSON values against an EMR API description in botocore's form: member names,
 * types, required members, enums. By default against the project's own table (what the EMR
 * double speaks, test/fakes/emr-shapes.ts); `emrModel()` is the real botocore model
 * (emr-service-2.json), present only where the third-party specs are.
 */
import { EMR_API } from './emr-shapes.js';
import { EMR_MODEL, specFile } from './specs-dir.js';

export interface EmrModel {
  metadata: { protocol: string; targetPrefix: string; jsonVersion: string };
  operations: Record<string, { input?: { shape: string }; output?: { shape: string }; errors?: { shape: string }[] }>;
  shapes: Record<string, any>;
}

let model: EmrModel | undefined;
/** The real botocore model: needs the specs (guard with HAVE_SPECS). */
export function emrModel(): EmrModel {
  return (model ??= JSON.parse(specFile(EMR_MODEL)) as EmrModel);
}

/** Problems with `value` as an instance of `shape` in `api` (empty when it conforms). */
export function checkShape(shapeName: string, value: unknown, at = '', api: EmrModel = EMR_API): string[] {
  const s = api.shapes[shapeName];
  if (!s) return [`${at || '(root)'}: unknown shape ${shapeName}`];
  const where = at || '(root)';
  switch (s.type) {
    case 'structure': {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        return [`${where}: expected an object (${shapeName})`];
      const out: string[] = [];
      for (const k of Object.keys(value))
        if (!s.members[k]) out.push(`${at ? at + '.' : ''}${k}: not a member of ${shapeName}`);
      for (const r of s.required ?? [])
        if ((value as Record<string, unknown>)[r] === undefined)
          out.push(`${at ? at + '.' : ''}${r}: required by ${shapeName}`);
      for (const [k, m] of Object.entries(s.members as Record<string, { shape: string }>)) {
        const v = (value as Record<string, unknown>)[k];
        if (v !== undefined) out.push(...checkShape(m.shape, v, `${at ? at + '.' : ''}${k}`, api));
      }
      return out;
    }
    case 'list':
      if (!Array.isArray(value)) return [`${where}: expected a list (${shapeName})`];
      return value.flatMap((v, i) => checkShape(s.member.shape, v, `${at}[${i}]`, api));
    case 'map':
      if (typeof value !== 'object' || value === null) return [`${where}: expected a map`];
      return Object.values(value).flatMap((v) => checkShape(s.value.shape, v, `${at}{}`, api));
    case 'string':
      if (typeof value !== 'string') return [`${where}: expected a string (${shapeName})`];
      if (s.enum && !s.enum.includes(value)) return [`${where}: "${value}" is not one of ${s.enum.join('|')}`];
      return [];
    case 'integer':
    case 'long':
    case 'double':
    case 'float':
      return typeof value === 'number' ? [] : [`${where}: expected a number`];
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${where}: expected a boolean`];
    case 'timestamp':
      // awsJson1_1 sends timestamps as epoch seconds.
      return typeof value === 'number' ? [] : [`${where}: expected epoch seconds`];
    default:
      return [];
  }
}
