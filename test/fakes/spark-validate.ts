/**
 * Why a SparkApplication or SparkConnect would be refused: by the project's schema of it
 * (spark-schemas.ts, which the test cluster's CRDs are made from) and, where the third-party
 * specs are present, by the Spark Operator's real CRD too. Tests check the objects Strata made,
 * as read back from the API server, with it.
 */
import { APP_CRD, CONNECT_CRD, crdValidatorIfPresent, newAjv, type Validate } from './specs-dir.js';
import { SPARK_APPLICATION_SCHEMA, SPARK_CONNECT_SCHEMA } from './spark-schemas.js';

const KINDS = {
  SparkApplication: { schema: SPARK_APPLICATION_SCHEMA, crd: APP_CRD, version: 'v1beta2' },
  SparkConnect: { schema: SPARK_CONNECT_SCHEMA, crd: CONNECT_CRD, version: 'v1alpha1' },
};

const validators = new Map<string, Validate[]>();
function validatorsOf(kind: keyof typeof KINDS): Validate[] {
  if (!validators.has(kind)) {
    const k = KINDS[kind];
    const crd = crdValidatorIfPresent(k.crd, k.version);
    validators.set(kind, [newAjv().compile(k.schema) as Validate, ...(crd ? [crd] : [])]);
  }
  return validators.get(kind)!;
}

/** Each schema's complaints (`/path: message`), empty when all accept `o`. */
export function sparkObjectProblems(kind: keyof typeof KINDS, o: unknown): string[] {
  return validatorsOf(kind).flatMap((v) =>
    v(o) ? [] : (v.errors ?? []).map((e) => `${e.instancePath || '(root)'}: ${e.message}`),
  );
}

export const sparkApplicationProblems = (o: unknown) => sparkObjectProblems('SparkApplication', o);
