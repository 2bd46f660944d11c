/** Checks JSON values against the botocore EMR model (emr-service-2.json): member names, types, required, enums. */
import { specFile } from './specs-dir.js';

export interface EmrModel {
  metadata: { protocol: string; targetPrefix: string; jsonVersion: string };
  operations: Record<string, { input?: { shape: string }; output?: { shape: string }; errors?: { shape: string }[] }>;
  shapes: Record<string, any>;
}

let model: EmrModel | undefined;
export function emrModel(): EmrModel {
  return (model ??= JSON.parse(specFile('emr-service-2.json')) as EmrModel);
}

/** Problems with `value` as an instance of `shape` (empty when it conforms). */
export function checkShape(shapeName: string, value: unknown, at = ''): string[] {
  const s = emrModel().shapes[shapeName];
  if (!s) return [`${at || '(root)'}: unknown shape ${shapeName}`];
  const where = at || '(root)';
  switch (s.type) {
    case 'structure': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${where}: expected an object (${shapeName})`];
      const out: string[] = [];
      for (const k of Object.keys(value)) if (!s.members[k]) out.push(`${at ? at + '.' : ''}${k}: not a member of ${shapeName}`);
      for (const r of s.required ?? []) if ((value as Record<string, unknown>)[r] === undefined) out.push(`${at ? at + '.' : ''}${r}: required by ${shapeName}`);
      for (const [k, m] of Object.entries(s.members as Record<string, { shape: string }>)) {
        const v = (value as Record<string, unknown>)[k];
        if (v !== undefined) out.push(...checkShape(m.shape, v, `${at ? at + '.' : ''}${k}`));
      }
      return out;
    }
    case 'list':
      if (!Array.isArray(value)) return [`${where}: expected a list (${shapeName})`];
      return value.flatMap((v, i) => checkShape(s.member.shape, v, `${at}[${i}]`));
    case 'map':
      if (typeof value !== 'object' || value === null) return [`${where}: expected a map`];
      return Object.values(value).flatMap((v) => checkShape(s.value.shape, v, `${at}{}`));
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
