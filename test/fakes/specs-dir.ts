/**
 * The third-party API specifications the protocol doubles are checked against (CRDs, the
 * Airbyte OpenAPI document, the botocore EMR model). They are not in the repository: they
 * live in `../shared/specs` beside the checkout, or where STRATA_SPECS_DIR points.
 *
 * The doubles themselves need none of them (what they serve and validate is written in
 * test/fakes/). When the folder is missing, the checks against the real specs are skipped
 * and say so; with STRATA_SPECS_REQUIRED=1 (CI) a missing folder is an error instead.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import AjvModule from 'ajv';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const candidate = process.env.STRATA_SPECS_DIR ?? path.resolve(repoRoot, '..', 'shared', 'specs');

let announced = false;
/** The specs folder, or undefined when this checkout has none (announced once per process). */
export function specsDir(): string | undefined {
  if (existsSync(path.join(candidate, 'README.md'))) return candidate;
  const why = `third-party API specs not found at ${candidate} (set STRATA_SPECS_DIR to the folder holding them)`;
  if (process.env.STRATA_SPECS_REQUIRED === '1') throw new Error(`${why}; STRATA_SPECS_REQUIRED=1 makes that an error`);
  if (!announced) {
    announced = true;
    console.warn(
      `[specs] ${why}: the checks of the protocol doubles against the real specs are SKIPPED; the doubles work without them.`,
    );
  }
  return undefined;
}

/** True when the real specs are here: use it as `it.runIf(HAVE_SPECS)` for checks against them. */
export const HAVE_SPECS = specsDir() !== undefined;

/** What a skipped check's title says about why it was skipped. */
export const NEEDS_SPECS = HAVE_SPECS ? '' : ' [SKIPPED: no third-party spec files in this checkout]';

export function specFile(name: string): string {
  const dir = specsDir();
  if (!dir)
    throw new Error(`spec file ${name} is needed here but no specs folder was found: guard this check with HAVE_SPECS`);
  const p = path.join(dir, name);
  if (!existsSync(p)) throw new Error(`spec file ${p} is missing; the doubles cannot be checked against it`);
  return readFileSync(p, 'utf8');
}

const yamlCache = new Map<string, any>();
export function specYaml(name: string): any {
  if (!yamlCache.has(name)) yamlCache.set(name, parse(specFile(name), { maxAliasCount: -1 }));
  return yamlCache.get(name);
}

/** Ajv for Kubernetes/OpenAPI schemas: vendor keywords ignored, formats not enforced. */
export function newAjv() {
  const AjvCtor = ((AjvModule as unknown as { default?: unknown }).default ??
    AjvModule) as unknown as typeof AjvModule.default;
  return new AjvCtor({ strict: false, allErrors: true, validateFormats: false });
}

export type Validate = ((o: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null };
const crdCache = new Map<string, Validate>();

/** The openAPIV3Schema of a CRD's served version (needs the specs: guard with HAVE_SPECS). */
export function crdSchema(file: string, version: string): Record<string, any> {
  const crd = specYaml(file);
  const v = crd.spec.versions.find((x: { name: string }) => x.name === version);
  if (!v) throw new Error(`${file} serves no version ${version}`);
  return v.schema.openAPIV3Schema;
}

/** A validator for a CRD's openAPIV3Schema (the version served); needs the specs. */
export function crdValidator(file: string, version: string): Validate {
  const key = `${file}@${version}`;
  if (!crdCache.has(key)) crdCache.set(key, newAjv().compile(crdSchema(file, version)) as Validate);
  return crdCache.get(key)!;
}

/** The CRD's validator when the specs are here, else undefined. */
export function crdValidatorIfPresent(file: string, version: string): Validate | undefined {
  return HAVE_SPECS ? crdValidator(file, version) : undefined;
}

export const APP_CRD = 'spark-operator-sparkapplications-crd.yaml';
export const CONNECT_CRD = 'spark-operator-sparkconnects-crd.yaml';
export const AIRBYTE_OPENAPI = 'airbyte-public-api.openapi.yaml';
export const EMR_MODEL = 'emr-service-2.json';
