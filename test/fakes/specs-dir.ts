/** The real API specifications the doubles are checked against (../shared/specs). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import AjvModule from 'ajv';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function specsDir(): string {
  const dir = process.env.STRATA_SPECS_DIR ?? path.resolve(repoRoot, '..', 'shared', 'specs');
  if (!existsSync(path.join(dir, 'README.md')))
    throw new Error(`API specs folder not found at ${dir}: the protocol doubles are checked against it. Set STRATA_SPECS_DIR to the folder holding the real specs.`);
  return dir;
}

export function specFile(name: string): string {
  const p = path.join(specsDir(), name);
  if (!existsSync(p)) throw new Error(`spec file ${p} is missing; the doubles cannot be checked without it`);
  return readFileSync(p, 'utf8');
}

const yamlCache = new Map<string, any>();
export function specYaml(name: string): any {
  if (!yamlCache.has(name)) yamlCache.set(name, parse(specFile(name), { maxAliasCount: -1 }));
  return yamlCache.get(name);
}

/** Ajv for Kubernetes/OpenAPI schemas: vendor keywords ignored, formats not enforced. */
export function newAjv() {
  const AjvCtor = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as unknown as typeof AjvModule.default;
  return new AjvCtor({ strict: false, allErrors: true, validateFormats: false });
}

type Validate = ((o: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null };
const crdCache = new Map<string, Validate>();

/** A validator for a CRD's openAPIV3Schema (the version served). */
export function crdValidator(file: string, version: string): Validate {
  const key = `${file}@${version}`;
  if (!crdCache.has(key)) {
    const crd = specYaml(file);
    const v = crd.spec.versions.find((x: { name: string }) => x.name === version);
    if (!v) throw new Error(`${file} serves no version ${version}`);
    crdCache.set(key, newAjv().compile(v.schema.openAPIV3Schema) as Validate);
  }
  return crdCache.get(key)!;
}

export const APP_CRD = 'spark-operator-sparkapplications-crd.yaml';
export const CONNECT_CRD = 'spark-operator-sparkconnects-crd.yaml';
